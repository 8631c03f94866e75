"""Secrets never reach a config dump: keys that hold them are redacted, ordinary keys are kept."""

from arastory.train.tracking import REDACTED, redact


def test_secret_keys_are_redacted_and_others_kept():
    config = {
        "judge": {"api_key": "sk-abc", "model": "gpt-4"},
        "hf_token": "hf_x",
        "token": "t",
        "sample": {"max_new_tokens": 8},
        "client_secret": "s",
        "wandb": {"password": "p", "project": "a"},
        "list": [{"access_token": "x"}],
        "empty_api_key": None,
    }
    out = redact(config)
    assert out["judge"] == {"api_key": REDACTED, "model": "gpt-4"}
    assert out["hf_token"] == out["token"] == out["client_secret"] == out["wandb"]["password"] == REDACTED
    assert out["list"][0]["access_token"] == REDACTED
    assert out["sample"]["max_new_tokens"] == 8 and out["wandb"]["project"] == "a"
