"""Keep secrets out of everything arastory writes or prints: secret-named keys, key-shaped values, env secrets."""

from __future__ import annotations

import os
import re
from typing import Any

# Names of keys that hold secrets (api_key, hf_token, access_token, client_secret, password, ...), not max_new_tokens.
SECRET_KEY = re.compile(
    r"(^|[_-])(api[_-]?key|secret|password|passwd|credentials?|authorization|private[_-]?key)$"
    r"|(^|[_-])((auth|access|api|hf|bearer|refresh)[_-]?)?token$",
    re.IGNORECASE,
)
# Shapes of real credentials: OpenAI, Hugging Face, Google API keys and OAuth tokens, GitHub, Slack, AWS, W&B-style hex.
SECRET_VALUE = re.compile(
    r"sk-[A-Za-z0-9_\-]{16,}|hf_[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_\-]{30,}|ya29\.[0-9A-Za-z_\-]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)
# Environment variables whose values are secrets wherever they appear (OPENAI_API_KEY, HF_TOKEN, WANDB_API_KEY, ...).
SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
REDACTED = "***redacted***"
MIN_SECRET_LENGTH = 8  # shorter env values ("1", "true") are not treated as secrets


def env_secrets() -> list[str]:
    """Values of secret-named environment variables, longest first (so a key is never half-replaced)."""
    values = {v.strip() for k, v in os.environ.items() if SECRET_ENV.search(k) and len(v.strip()) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def is_secret_key(name: object) -> bool:
    return bool(SECRET_KEY.search(str(name)))


def looks_secret(text: str) -> bool:
    """True when `text` holds a credential-shaped string or the value of a secret environment variable."""
    return bool(SECRET_VALUE.search(text)) or any(secret in text for secret in env_secrets())


def scrub(text: str) -> str:
    """`text` with every credential-shaped string and every env secret replaced by REDACTED."""
    for secret in env_secrets():
        text = text.replace(secret, REDACTED)
    return SECRET_VALUE.sub(REDACTED, text)


def redact(obj: Any) -> Any:
    """A copy of a plain config container: secret-named keys' values replaced, secret-looking strings scrubbed.

    Any in, the same shape out (a tuple comes back as a list): callers pass what OmegaConf.to_container returns."""
    if isinstance(obj, dict):
        return {k: (REDACTED if is_secret_key(k) and v not in (None, "") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return scrub(obj)
    return obj


def redact_override(override: str) -> str:
    """`key=value` with the value redacted when the key is secret-named or the value looks secret."""
    key, sep, value = override.partition("=")
    if sep and (is_secret_key(key.lstrip("+~").rsplit(".", 1)[-1]) or looks_secret(value)):
        return f"{key}={REDACTED}"
    return scrub(override)
