"""The example client behind sample-requests.py and short-sample-requests.py.

In the style of the original clients (REST env var, JSON built with jsonpickle, every request
printed), but it completes the loop: waits for each song, downloads its stems, reports sizes.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import sys
import time
from pathlib import Path

import jsonpickle
import requests

REST = os.getenv("REST") or "localhost:5000"
DATA_DIR = Path(os.getenv("DATA_DIR") or "data")
OUTPUT_DIR = Path(os.getenv("OUTPUT_DIR") or "output")
WAIT_S = float(os.getenv("WAIT_S") or "900")


def mkReq(reqmethod, endpoint, data, verbose=True):  # noqa: N802 - the original client's name
    """Send `data` as JSON; print and return the decoded body on 200, None otherwise."""
    json_data = jsonpickle.encode(data)
    if verbose and data is not None:
        print(f"Make request http://{REST}/{endpoint} with json {list(data.keys())}")
    response = reqmethod(f"http://{REST}/{endpoint}", data=json_data,
                         headers={"Content-type": "application/json"}, timeout=120)
    if response.status_code == 200:
        print(json.dumps(response.json(), indent=4, sort_keys=True))
        return response.json()
    print(f"response code is {response.status_code}, raw response is {response.text}")
    return None


def wait_for(song_hash: str) -> dict:
    """Poll the song's status until it is done or failed."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        status = requests.get(f"http://{REST}/apiv1/status/{song_hash}", timeout=30).json()
        if status.get("status") in ("done", "failed"):
            return status
        time.sleep(0.5)
    return {"status": "timeout", "error": f"not finished after {WAIT_S:.0f} s"}


def download(song_hash: str, tracks: list[str]) -> list[Path]:
    folder = OUTPUT_DIR / song_hash
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for track in tracks:
        response = requests.get(f"http://{REST}/apiv1/track/{song_hash}/{track}", timeout=120)
        response.raise_for_status()
        path = folder / track
        path.write_bytes(response.content)
        saved.append(path)
    return saved


def main(pattern: str) -> int:
    songs = sorted(glob.glob(str(DATA_DIR / pattern)))
    if not songs:
        print(f"no files match {DATA_DIR / pattern}")
        return 1
    submitted = {}
    for mp3 in songs:
        print(f"Separate {mp3}")
        body = mkReq(requests.post, "apiv1/separate", data={
            "mp3": base64.b64encode(open(mp3, "rb").read()).decode("utf-8"),
            "callback": {"url": "http://localhost:5000", "data": {"mp3": mp3,
                                                                   "data": "to be returned"}}})
        if body:
            submitted[mp3] = body["hash"]
        print("Queue on the server is")
        mkReq(requests.get, "apiv1/queue", data=None)
    failures = len(songs) - len(submitted)
    for mp3, song_hash in submitted.items():
        status = wait_for(song_hash)
        if status["status"] != "done":
            print(f"{mp3}: {status['status']}: {status.get('error')}")
            failures += 1
            continue
        for path in download(song_hash, status["tracks"]):
            print(f"{mp3}: {path} ({path.stat().st_size} bytes)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "*.mp3"))
