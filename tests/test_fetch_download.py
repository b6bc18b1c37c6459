"""`fetch_model download`: catalogued files fetched from a loopback HTTP server, checked, resumed,
and never left half-written under their final names."""

from __future__ import annotations

import hashlib
import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: several blocks
CONFIG = "audio:\n  chunk_size: 352800\n"


class FileServer:
    """Serves named byte strings over loopback, honours Range, and can cut the first reply."""

    def __init__(self, files: dict[str, bytes], cut_first_at: int = 0):
        self.files = files
        self.cut_first_at = cut_first_at
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                body = server.files.get(self.path.lstrip("/"))
                server.ranges.append(self.headers.get("Range"))
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if server.cut_first_at:  # promise the whole file, send part of it, hang up
                    self.wfile.write(body[:server.cut_first_at])
                    server.cut_first_at = 0
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FileServer]:
    files = FileServer({"w.ckpt": WEIGHTS, "c.yaml": CONFIG.encode()})
    yield files
    files.close()


def catalogue(tmp_path: Path, server: FileServer, ckpt: str = "w.ckpt", sha: str | None = None,
              prefix: str = "") -> Path:
    """A catalogue of one RoFormer model, `tiny`, whose two files come from `server`."""
    sha = hashlib.sha256(WEIGHTS).hexdigest() if sha is None else sha
    config_sha = hashlib.sha256(CONFIG.encode()).hexdigest()
    checks = (f', sha256 = "{sha}"' if sha else "") + (
        f', sha256_prefix = "{prefix}"' if prefix else "")
    path = tmp_path / "catalogue.toml"
    path.write_text(f"""
[models.tiny]
family = "bs_roformer"
stems = ["vocals", "other"]
sample_rate = 44100
files = [
  {{ name = "tiny.ckpt", url = "{server.url(ckpt)}"{checks} }},
  {{ name = "tiny.yaml", url = "{server.url('c.yaml')}", sha256 = "{config_sha}" }},
]
""")
    return path


def fetch(tmp_path: Path, catalogue_file: Path, *args: str,
          **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the download command into tmp_path/models (stdout is a pipe: plain lines)."""
    command = [sys.executable, "-m", "worker.separation.fetch_model", "download", *args,
               "--catalogue", str(catalogue_file), "--models-dir", str(tmp_path / "models")]
    env = {k: v for k, v in os.environ.items() if k not in ("MODELS_DIR", "DEMUCS_REPO")}
    env.update(settings)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def listing(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "models").iterdir())


def test_fetches_a_model_checked_with_progress_lines(tmp_path: Path, server: FileServer) -> None:
    out = fetch(tmp_path, catalogue(tmp_path, server), "tiny")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "models" / "tiny.ckpt").read_bytes() == WEIGHTS
    assert (tmp_path / "models" / "tiny.yaml").read_text() == CONFIG
    assert listing(tmp_path) == ["tiny.ckpt", "tiny.yaml"]
    lines = out.stdout.splitlines()
    assert "fetch_model: tiny: tiny.ckpt 100% (1.0 of 1.0 MB)" in lines
    assert lines[-1] == (f"fetch_model: tiny: fetched in {tmp_path / 'models'} "
                         "(tiny.ckpt, tiny.yaml)")
    again = fetch(tmp_path, catalogue(tmp_path, server), "tiny")
    assert again.stdout.endswith("tiny: already present in "
                                 f"{tmp_path / 'models'} (tiny.ckpt, tiny.yaml)\n")


def test_wrong_hash_leaves_nothing(tmp_path: Path, server: FileServer) -> None:
    out = fetch(tmp_path, catalogue(tmp_path, server, sha="0" * 64), "tiny")
    assert out.returncode == 1
    actual = hashlib.sha256(WEIGHTS).hexdigest()
    assert out.stderr == (f"fetch_model: tiny.ckpt: sha256 {actual} does not match the "
                          f"catalogue's {'0' * 64}; the download was removed\n")
    assert listing(tmp_path) == []


def test_truncated_download_resumes_with_a_range_request(tmp_path: Path,
                                                         server: FileServer) -> None:
    server.cut_first_at = 300_000
    first = fetch(tmp_path, catalogue(tmp_path, server), "tiny")
    assert first.returncode == 1
    (line,) = first.stderr.splitlines()
    assert line.startswith("fetch_model: tiny.ckpt.part: ")
    assert line.endswith("run the same command again to resume")
    assert listing(tmp_path) == ["tiny.ckpt.part"]  # nothing under a final name
    assert (tmp_path / "models" / "tiny.ckpt.part").stat().st_size == 300_000

    second = fetch(tmp_path, catalogue(tmp_path, server), "tiny")
    assert second.returncode == 0, second.stderr
    assert server.ranges[-2:] == ["bytes=300000-", None]  # the rest of the ckpt, then the yaml
    assert (tmp_path / "models" / "tiny.ckpt").read_bytes() == WEIGHTS
    assert listing(tmp_path) == ["tiny.ckpt", "tiny.yaml"]


def test_missing_file_is_one_line(tmp_path: Path, server: FileServer) -> None:
    out = fetch(tmp_path, catalogue(tmp_path, server, ckpt="gone.ckpt"), "tiny")
    assert out.returncode == 1
    assert out.stderr == f"fetch_model: HTTP 404 Not Found from {server.url('gone.ckpt')}\n"
    assert listing(tmp_path) == []


def test_entry_without_sha256_needs_no_verify(tmp_path: Path, server: FileServer) -> None:
    unchecked = catalogue(tmp_path, server, sha="")
    refused = fetch(tmp_path, unchecked, "tiny")
    assert refused.returncode == 1 and server.ranges == []
    assert refused.stderr == ("fetch_model: tiny: the catalogue has no sha256 for tiny.ckpt, so "
                              "it cannot be checked; pass --no-verify to fetch it unchecked, or "
                              "add its sha256 to the catalogue\n")
    allowed = fetch(tmp_path, unchecked, "tiny", "--no-verify")
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "models" / "tiny.ckpt").read_bytes() == WEIGHTS


def test_published_prefix_is_checked_even_unverified(tmp_path: Path, server: FileServer) -> None:
    out = fetch(tmp_path, catalogue(tmp_path, server, sha="", prefix="deadbeef"), "tiny",
                "--no-verify")
    assert out.returncode == 1
    assert "does not start with deadbeef" in out.stderr
    assert listing(tmp_path) == []


def test_unknown_model_names_the_known_ones(tmp_path: Path, server: FileServer) -> None:
    out = fetch(tmp_path, catalogue(tmp_path, server), "nope")
    assert out.returncode == 1
    assert out.stderr.startswith("fetch_model: not in the catalogue: nope (known: tiny); ")


def test_without_names_the_served_catalogued_models_are_fetched(tmp_path: Path,
                                                               server: FileServer) -> None:
    out = fetch(tmp_path, catalogue(tmp_path, server), DEMUCS_MODELS="mine,tiny",
                DEFAULT_MODEL="mine")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == ("fetch_model: mine: not in the catalogue, not fetched (its files are "
                        "yours to put in the models folder)")
    assert lines[-1].startswith("fetch_model: tiny: fetched in ")
    assert listing(tmp_path) == ["tiny.ckpt", "tiny.yaml"]


def test_a_terminal_gets_a_bar_not_lines(tmp_path: Path, server: FileServer) -> None:
    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "worker.separation.fetch_model", "download", "tiny",
               "--catalogue", str(catalogue(tmp_path, server)), "--models-dir",
               str(tmp_path / "models")]
    process = subprocess.Popen(command, cwd=ROOT, stdout=follower, stderr=follower,
                               env={**os.environ, "COLUMNS": "100", "TERM": "xterm"})
    os.close(follower)
    written = b""
    while True:
        try:
            chunk = os.read(leader, 65536)  # blocks until output, fails once the process ends
        except OSError:
            break
        if not chunk:
            break
        written += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0, written
    text = written.decode(errors="replace")
    assert "\x1b[" in text and "tiny.ckpt" in text  # drawn, then cleared
    assert "% (" not in text  # no plain progress lines
    assert (tmp_path / "models" / "tiny.ckpt").read_bytes() == WEIGHTS


def test_download_path_imports_no_torch(tmp_path: Path, server: FileServer) -> None:
    args = ["download", "tiny", "--catalogue", str(catalogue(tmp_path, server)),
            "--models-dir", str(tmp_path / "models")]
    script = ("import sys; from worker.separation.fetch_model import main; "
              f"code = main({args!r}); "
              "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr


def test_shipped_catalogue_lists_demucs_and_roformer_models() -> None:
    out = subprocess.run([sys.executable, "-m", "worker.separation.fetch_model", "list"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in out.stdout.splitlines()}
    assert rows["htdemucs"] == ["demucs", "drums,bass,other,vocals", "needs --no-verify"]
    assert rows["bs_roformer_viperx_1297"][0] == "bs_roformer"
    assert rows["mel_band_roformer_kim"][0] == "mel_band_roformer"
