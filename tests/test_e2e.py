"""The whole service as `make up` runs it: gunicorn and a worker process, driven over HTTP by
the example client short-sample-requests.py."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import sphn

from common.logship import follow

ROOT = Path(__file__).resolve().parent.parent


def test_short_sample_client_gets_four_stems_per_song(live_stack, redis_client, tmp_path):
    base_url = live_stack.start_rest()
    live_stack.start_worker()
    data = tmp_path / "data"
    data.mkdir()
    songs = sorted((ROOT / "data").glob("short*.mp3"))
    assert len(songs) >= 2
    for song in songs:
        shutil.copy(song, data)
    env = {**os.environ, "REST": base_url.removeprefix("http://"), "DATA_DIR": str(data),
           "OUTPUT_DIR": str(tmp_path / "output"), "WAIT_S": "300"}
    result = subprocess.run([sys.executable, "short-sample-requests.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr + live_stack.worker_log()
    assert '"reason": "Song enqueued for separation"' in result.stdout
    for song in songs:
        song_hash = hashlib.sha256(base64.b64encode(song.read_bytes())).hexdigest()
        original, original_rate = sphn.read(str(song))
        stems = sorted((tmp_path / "output" / song_hash).iterdir())
        assert [stem.name for stem in stems] == ["bass.mp3", "drums.mp3", "other.mp3",
                                                 "vocals.mp3"]
        for stem in stems:
            audio, rate = sphn.read(str(stem))
            assert rate == 44100 and audio.shape[0] == 2, stem
            assert abs(audio.shape[1] / rate - original.shape[1] / original_rate) < 0.1, stem

    printed = io.StringIO()
    with redirect_stdout(printed):
        follow(redis_client, timeout=1, once=True)
    lines = printed.getvalue().splitlines()
    assert any(".rest.info:song " in line for line in lines)
    assert any(".worker.info:song " in line and ": separated" in line for line in lines)
    assert any(".render.info:song " in line and ": done" in line for line in lines)
