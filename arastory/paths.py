"""Where arastory's configs, bundled data and caches live."""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
CONF_DIR = PACKAGE_DIR / "conf"  # inside the package, so a wheel carries its configs
BUNDLED_DIR = PACKAGE_DIR / "data" / "bundled"


def cache_dir() -> Path:
    """Root of arastory's content-addressed caches (override with ARASTORY_CACHE)."""
    root = os.environ.get("ARASTORY_CACHE") or Path.home() / ".cache" / "arastory"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
