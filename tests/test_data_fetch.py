"""`python -m arastory.data fetch`: pinned files over real HTTP on 127.0.0.1, resumed after an interruption,
verified (a mismatch leaves nothing behind), skipped once verified, with one-line errors."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from arastory.data import fetch as fetch_module
from arastory.data.fetch import DownloadError, PinnedFile, Release, fetch, git_blob_id, sha256_of
from arastory.errors import DataError
from tests.conftest import run_cli


class FileServer:
    """Serves `files` {name: bytes} with Range support; `cut[name]` = bytes sent before the first answer breaks off."""

    def __init__(self, files: dict[str, bytes], cut: dict[str, int] | None = None):
        self.files, self.cut = files, dict(cut or {})
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                body, start = server.files[name], 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if name in server.cut:  # the connection drops mid-body, once
                    self.wfile.write(body[start : start + server.cut.pop(name)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def pinned(name: str, body: bytes) -> PinnedFile:
    return PinnedFile(name, len(body), hashlib.sha1(f"blob {len(body)}\0".encode() + body).hexdigest())


@pytest.fixture
def tiny_release(monkeypatch):
    """A two-file release in the released CSV format, pinned the same way as the real one."""

    def csv(prompt: str, story: str, rows: int) -> bytes:  # many stories of ordinary length, as released
        return (",Prompt,Story\n" + "".join(f"{i},{prompt} {i},{story * 20}{i}\n" for i in range(rows))).encode()

    files = {
        "Formatted-Egyptian-prompts-stories-for-fine-tuning.csv": csv("اكتب قصة", "كان فيه ولد صغير. ", 200),
        "Formatted-Moroccan-prompts-stories-for-fine-tuning.csv": csv("كتب قصة", "كان واحد الدري. ", 150),
    }
    release = Release(
        "arastories",
        "https://example.invalid/unused",
        tuple(pinned(n, b) for n, b in files.items()),
        "MIT",
        "https://example.invalid",
    )
    monkeypatch.setitem(fetch_module.RELEASES, "arastories", release)
    return files


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path, tiny_release):
    egy = "Formatted-Egyptian-prompts-stories-for-fine-tuning.csv"
    with FileServer(tiny_release, cut={egy: 20_000}) as server:
        with pytest.raises(
            DownloadError,
            match=rf"{egy}: .* after 20000 of {len(tiny_release[egy])} bytes; "
            rf"{egy}.part is kept and the next run resumes it",
        ):
            fetch("arastories", tmp_path, base_url=server.base_url, progress=False)
        assert (tmp_path / f"{egy}.part").stat().st_size == 20_000 and not (tmp_path / egy).exists()
        done = fetch("arastories", tmp_path, base_url=server.base_url, progress=False)
        assert done[egy] == "resumed" and (egy, "bytes=20000-") in server.requests
        for name, body in tiny_release.items():
            assert (tmp_path / name).read_bytes() == body and not (tmp_path / f"{name}.part").exists()
            assert git_blob_id(tmp_path / name) == pinned(name, body).git_blob
        sums = (tmp_path / "SHA256SUMS").read_text().splitlines()
        assert sums == [f"{sha256_of(tmp_path / n)}  {n}" for n in tiny_release]
        asked = len(server.requests)
        assert set(fetch("arastories", tmp_path, base_url=server.base_url, progress=False).values()) == {
            "already verified"
        }
        assert len(server.requests) == asked, "verified files are not downloaded again"

    from arastory.data.readers import read_stories  # the format `data=arastories` / `dialect_id=released` read

    assert {r.variety for r in read_stories(tmp_path)} == {"egy", "mor"}


def test_a_file_that_is_not_the_pinned_one_is_refused_and_removed(tmp_path, tiny_release):
    mor = "Formatted-Moroccan-prompts-stories-for-fine-tuning.csv"
    tampered = {**tiny_release, mor: tiny_release[mor][:-20] + "تبديل في النهاية.\n".encode()[:20]}
    with FileServer(tampered) as server:
        with pytest.raises(DataError, match=rf"{mor}: checksum mismatch: (git blob|size)"):
            fetch("arastories", tmp_path, base_url=server.base_url, progress=False)
    assert not (tmp_path / mor).exists() and not (tmp_path / f"{mor}.part").exists()


def test_the_cli_checks_the_real_pins_and_says_what_is_wrong(tmp_path, released_dir):
    """The copies in ../shared are a subset of the release (846/850/850 of 996/1000/1000 rows): refused as such."""
    files = {p.name: p.read_bytes() for p in released_dir.glob("*.csv")}
    with FileServer(files) as server:
        proc = run_cli(
            [
                "-m",
                "arastory.data",
                "fetch",
                "arastories",
                f"out={tmp_path}",
                f"base_url={server.base_url}",
                "progress=false",
            ]
        )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("data error: ") and "checksum mismatch: size" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not list(tmp_path.glob("*.csv*"))
    for args, message in (
        (["fetch", "other", f"out={tmp_path}"], "config error: dataset: 'other' is not one of: arastories"),
        (["fetch", "arastories"], "config error: out: where to put the files? out=<dir>"),
        (["get", "arastories", f"out={tmp_path}"], "usage: python -m arastory.data fetch <dataset>"),
    ):
        proc = run_cli(["-m", "arastory.data", *args])
        assert proc.returncode == 2 and proc.stderr.strip().startswith(message), proc.stderr
    with FileServer({}) as server:  # nothing there: a download error, exit 1 (rerun to retry)
        proc = run_cli(["-m", "arastory.data", "fetch", "arastories", f"out={tmp_path}", f"base_url={server.base_url}"])
    assert proc.returncode == 1 and "download error:" in proc.stderr and "HTTP 404" in proc.stderr
