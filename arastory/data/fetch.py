"""Download a public dataset release over HTTP: pinned files, resumable (HTTP Range), verified, written atomically.

`python -m arastory.data fetch arastories out=<dir>` fetches the study's MIT-licensed GPT-4 stories from
github.com/UBC-NLP/arastories at a pinned commit. Each file is pinned by its size and its git blob id (the SHA-1
git computes over "blob <size>\\0" + content, as listed in the repository's tree at that commit); a sha256 of
every verified file is written to SHA256SUMS beside them. A partial download is kept as `<name>.part` and resumed
with a Range request; only a complete, verified file is renamed into place.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from arastory.errors import ArastoryError, ConfigError, DataError


@dataclass(frozen=True)
class PinnedFile:
    name: str
    size: int
    git_blob: str  # SHA-1 of b"blob <size>\0" + content, as in `git ls-tree -l <commit>`


@dataclass(frozen=True)
class Release:
    name: str
    base_url: str
    files: tuple[PinnedFile, ...]
    license: str
    homepage: str


ARASTORIES_COMMIT = "dc20682ec0beea51462facf87d008f166a585d96"
RELEASES = {
    "arastories": Release(
        name="arastories",
        base_url=f"https://raw.githubusercontent.com/UBC-NLP/arastories/{ARASTORIES_COMMIT}/data",
        files=(
            PinnedFile(
                "Formatted-Egyptian-prompts-stories-for-fine-tuning.csv",
                3219511,
                "06856fbb78c40ad29299679e9e1b7cbc52467848",
            ),
            PinnedFile(
                "Formatted-MSA-prompts-stories-for-fine-tuning.csv", 3327957, "2a30c14f65dab64a2a3041bf5e0656b0126d2b66"
            ),
            PinnedFile(
                "Formatted-Moroccan-prompts-stories-for-fine-tuning.csv",
                3074786,
                "269b01c3ce23f259418d7ad23e695963d5436d08",
            ),
        ),
        license="MIT (per the repository's README)",
        homepage="https://github.com/UBC-NLP/arastories",
    ),
}


class DownloadError(ArastoryError):
    """The server or the network failed; what arrived is kept as <name>.part and the next run resumes it."""

    def __init__(self, url: str, message: str):
        super().__init__(f"download error: {url}: {message}")


def git_blob_id(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, pinned: PinnedFile) -> str | None:
    """None when `path` is the pinned file, else what differs."""
    size = path.stat().st_size
    if size != pinned.size:
        return f"size {size} bytes, expected {pinned.size}"
    blob = git_blob_id(path)
    if blob != pinned.git_blob:
        return f"git blob {blob}, expected {pinned.git_blob}"
    return None


def fetch(
    release_name: str, out: str | Path, base_url: str | None = None, timeout: float = 60.0, progress: bool = True
) -> dict:
    """Download every file of `release_name` into `out` (skipping verified ones); returns what was done per file."""
    if release_name not in RELEASES:
        raise ConfigError("dataset", f"'{release_name}' is not one of: {', '.join(RELEASES)}")
    release = RELEASES[release_name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = (base_url or release.base_url).rstrip("/")
    done = {}
    for pinned in release.files:
        target = out / pinned.name
        if target.exists() and verify(target, pinned) is None:
            done[pinned.name] = "already verified"
            continue
        done[pinned.name] = download(f"{base}/{pinned.name}", target, pinned, timeout, progress)
    write_sums(out, release)
    return done


def download(url: str, target: Path, pinned: PinnedFile, timeout: float, progress: bool) -> str:
    """Fetch `url` into `target` through `<target>.part` (resumed with a Range request); verify, then rename."""
    import httpx
    from tqdm.auto import tqdm

    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > pinned.size:  # cannot be the start of the pinned file
        part.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    how = "downloaded"
    try:
        with httpx.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
            if response.status_code == 416 and have == pinned.size:
                pass  # the .part already holds every byte
            elif response.status_code not in (200, 206):
                raise DownloadError(url, f"HTTP {response.status_code}")
            else:
                resumed = response.status_code == 206 and have > 0
                how = "resumed" if resumed else "downloaded"
                mode = "ab" if resumed else "wb"
                with (
                    open(part, mode) as handle,
                    tqdm(
                        total=pinned.size,
                        initial=have if resumed else 0,
                        unit="B",
                        unit_scale=True,
                        desc=pinned.name,
                        disable=not progress,
                    ) as bar,
                ):
                    for chunk in response.iter_bytes():  # as received: a fixed chunk size would hold back a tail
                        handle.write(chunk)
                        bar.update(len(chunk))
                    handle.flush()
                    os.fsync(handle.fileno())
                have = part.stat().st_size
    except httpx.HTTPError as error:
        kept = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            url,
            f"{type(error).__name__} after {kept} of {pinned.size} bytes; "
            f"{part.name} is kept and the next run resumes it",
        ) from None
    problem = verify(part, pinned)
    if problem:
        part.unlink()
        raise DataError(
            target,
            f"checksum mismatch: {problem} (the download was removed; this is not the pinned "
            f"release file, check base_url)",
        )
    part.replace(target)
    return how


def write_sums(out: Path, release: Release) -> None:
    """SHA256SUMS for the verified files (`sha256sum -c SHA256SUMS` checks them later)."""
    from arastory.io import atomic_write_text

    lines = [f"{sha256_of(out / f.name)}  {f.name}" for f in release.files if (out / f.name).exists()]
    atomic_write_text(out / "SHA256SUMS", "\n".join(lines) + "\n")
