"""`synthesize n=` counts stories kept: fresh prompts until n pass the gates or max_attempts; exact resume; the
dialect gate and drift on the study's released stories served through an OpenAI-compatible server."""

import json
import os
import subprocess
import sys

import pytest

from arastory.data.readers import read_released_csv
from arastory.io import read_jsonl
from arastory.synthesize.run import sample_prompts
from tests.conftest import REPO
from tests.openai_server import OpenAIServer
from tests.test_synthesize_openai import FAST_CLIENT, KEY, StoryServer, bundled, compose_synth, run_synth


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def released(released_dir, name: str, count: int) -> list[str]:
    return [r.story for r in read_released_csv(released_dir / f"Formatted-{name}-prompts-stories-for-fine-tuning.csv")][
        :count
    ]


def test_n_counts_kept_stories_and_a_rerun_pays_for_nothing_twice(tmp_path):
    egy, msa = bundled("egy"), bundled("msa")
    stories = [msa[i] if i in (1, 4, 5) else egy[i] for i in range(20)]  # prompts 1, 4, 5 come back in MSA
    responder = StoryServer(stories=stories)
    with OpenAIServer(responder) as server:
        report = run_synth(tmp_path, server, responder, ["variety=egy", "n=6"])
    # Round 1 asks 6 prompts (3 rejected); at a keep rate of 1/2 round 2 asks 6 more: 9 pass, 6 are kept.
    assert (report["requested"], report["max_attempts"], report["answered"], report["kept"], report["surplus"]) == (
        6,
        12,
        12,
        6,
        3,
    )
    assert {k: v for k, v in report["rejected"].items() if v} == {"wrong_variety": 3}
    assert report["stopped"] == "kept n stories" and report["this_run"]["rounds"] == 2 and report["failed"] == 0
    assert set(responder.asked.values()) == {1} and len(server.requests) == 12
    kept = [s["id"] for s in read_jsonl(tmp_path / "stories.jsonl")]
    assert kept == [f"egy-s0-{i:06d}" for i in (0, 2, 3, 6, 7, 8)]  # the first six that passed, in prompt order
    assert [s["id"] for s in read_jsonl(tmp_path / "surplus.jsonl")] == [f"egy-s0-{i:06d}" for i in (9, 10, 11)]
    drift = report["dialect_drift"]
    assert drift["kept"]["n"] == 6 and drift["answered"]["n"] == 9 and 0 <= drift["kept"]["mean"] <= 0.5

    with OpenAIServer(responder) as server:  # the same command again: nothing to ask, the same report
        again = run_synth(tmp_path, server, responder, ["variety=egy", "n=6"])
    assert server.requests == [] and again["this_run"]["already_answered"] == 12 and again["this_run"]["rounds"] == 0
    assert {k: again[k] for k in ("answered", "kept", "surplus", "rejected")} == {
        k: report[k] for k in ("answered", "kept", "surplus", "rejected")
    }

    with OpenAIServer(responder) as server:  # a larger n extends the run: 9 kept of 12, 1 more needed -> 2 prompts
        more = run_synth(tmp_path, server, responder, ["variety=egy", "n=10"])
    assert len(server.requests) == 2 and more["kept"] == 10 and more["answered"] == 14 and more["surplus"] == 1
    assert max(responder.asked.values()) == 1, "no prompt was ever asked twice"


def test_max_attempts_bounds_what_a_run_pays_for(tmp_path, released_dir):
    """MSA stories offered as Moroccan: at least 95% rejected, and the run stops at max_attempts prompts."""
    responder = StoryServer(stories=released(released_dir, "MSA", 40))
    with OpenAIServer(responder) as server:
        report = run_synth(
            tmp_path, server, responder, ["variety=mor", "n=40", "max_attempts=40", "generator.concurrency=8"]
        )
    assert len(server.requests) == 40 and report["answered"] == 40
    assert report["rejected"]["wrong_variety"] >= 38 and report["kept"] <= 2, report["rejected"]
    assert report["stopped"] == "max_attempts (40) prompts sent"


def test_released_egyptian_stories_pass_the_gate(tmp_path, released_dir):
    responder = StoryServer(stories=released(released_dir, "Egyptian", 80))
    with OpenAIServer(responder) as server:
        report = run_synth(tmp_path, server, responder, ["variety=egy", "n=40", "generator.concurrency=8"])
    assert report["kept"] == 40 and report["rejected"]["wrong_variety"] <= 0.08 * report["answered"], report["rejected"]


def test_released_moroccan_stories_served_to_the_cli_keep_n(tmp_path, released_dir):
    """The issue's check: 40 Moroccan stories; before, the gate dropped 12 of the first 40 and n counted prompts."""
    responder = StoryServer(stories=released(released_dir, "Moroccan", 80))
    args = ["variety=mor", "n=40", "generator.concurrency=8"]
    responder.order = {p["prompt"]: i for i, p in enumerate(sample_prompts(compose_synth(args)))}
    env = {**os.environ, "OPENAI_API_KEY": KEY, "HYDRA_FULL_ERROR": "0"}
    with OpenAIServer(responder) as server:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "arastory.synthesize",
                *args,
                "generator=openai",
                f"out={tmp_path}",
                f"generator.base_url={server.base_url}",
                *FAST_CLIENT,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["kept"] == 40 and len(read_jsonl(tmp_path / "stories.jsonl")) == 40
    assert report["rejected"]["wrong_variety"] <= 0.08 * report["answered"], report["rejected"]
    assert report["answered"] == len(server.requests) <= 44
    drift = report["dialect_drift"]["kept"]
    assert drift["n"] == 40 and 0.05 < drift["mean"] < 0.6  # released Moroccan stories narrate partly in MSA
    assert "40/40 mor stories kept" in proc.stdout and "dialect drift: MSA sentences per kept story" in proc.stdout
