"""Peak memory of one gateway process receiving one large upload, as JSON base64 and as a
multipart file: `python -m scripts.bench.upload_memory [--mb 100] [--tree PATH]`.

The gateway runs under gunicorn with one worker, restarted for each upload so that each peak
(VmHWM, the resident set's high-water mark) is that upload's alone. `--tree` runs another
checkout's gateway (for a before/after figure) against the same Redis and S3 servers.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from scripts.local import stack
from scripts.local.make_samples import song_mp3

ROOT = Path(__file__).resolve().parents[2]


def _status_mb(master: subprocess.Popen, field: str) -> float:
    """A /proc status field of the gunicorn worker (the master's only child), in MB."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024


class AnonPeak:
    """The largest RssAnon (heap, not file pages mapped from the page cache) seen while on."""

    def __init__(self, master: subprocess.Popen):
        self.master, self.peak, self.on = master, 0.0, True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while self.on:
            self.peak = max(self.peak, _status_mb(self.master, "RssAnon"))
            time.sleep(0.01)

    def stop(self) -> float:
        self.on = False
        self.thread.join()
        return self.peak


def _gateway(tree: Path, env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = stack.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--threads", "1", "--timeout", "300", "rest.app:create_app()"],
        cwd=tree, env={**env, "PYTHONPATH": str(tree)}, stdout=log.open("ab"),
        stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    stack.wait_ready(base_url, process)
    return process, base_url


def measure(tree: Path, env: dict, songs: list[bytes], folder: Path) -> dict[str, float]:
    """Peak MB of the process (VmHWM, and the largest RssAnon seen): idle, then for a JSON
    upload and a multipart upload (each of another song, so that both are stored)."""
    body = json.dumps({"mp3": base64.b64encode(songs[0]).decode()}).encode()
    sends = {
        "json": lambda url: requests.post(f"{url}/apiv1/separate", data=body, timeout=600,
                                          headers={"Content-Type": "application/json"}),
        "multipart": lambda url: requests.post(f"{url}/apiv1/separate", timeout=600,
                                               files={"file": ("song.mp3", songs[1])}),
    }
    figures = {}
    for name, send in sends.items():
        process, url = _gateway(tree, env, folder / "rest.log")
        try:
            figures["idle"] = _status_mb(process, "VmHWM")
            started, anon = time.monotonic(), AnonPeak(process)
            answer = send(url)
            figures[f"{name}_anon"] = anon.stop()
            figures[f"{name}_s"] = time.monotonic() - started
            # A gateway without multipart uploads answers 415: its figure is -415.
            ok = answer.status_code == 200
            figures[name] = _status_mb(process, "VmHWM") if ok else -answer.status_code
        finally:
            stack.stop(process)
    return {key: round(value, 1) for key, value in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100)
    parser.add_argument("--tree", type=Path, default=ROOT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with stack.stores(folder, MAX_UPLOAD_MB=str(int(args.mb) + 1), MAX_DURATION_S="100000",
                          RATE_LIMIT_PER_MIN="0") as env:
            # MP3 frames concatenate: a short song repeated is a long, valid MP3.
            pieces = [song_mp3(10, seed=seed, bitrate=320) for seed in (1, 2)]
            songs = [piece * int(args.mb * 2**20 // len(piece)) for piece in pieces]
            print(f"{len(songs[0]) / 2**20:.1f} MB mp3 through {args.tree}:",
                  measure(args.tree, env, songs, folder))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
