"""The render pool: every track of a rendition once, the same bytes every time, no torch in
its processes, and no process left behind when the worker is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.tracks import TrackError, parse_rendition
from tests.stems import render_track, write_lossless
from worker.render.pool import Renderer, track_sources
from worker.runtime.errors import EncodeFailed

RATE = 44100
STEMS = ["drums", "bass", "other", "vocals"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stems() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {name: write_lossless((0.3 * rng.standard_normal((2, RATE))).astype("f4"), RATE)
            for name in STEMS}


@pytest.fixture
def stem_files(stems, tmp_path) -> dict[str, str]:
    """The stems as the render worker fetches them: files, in the model's order."""
    (tmp_path / "stems").mkdir()
    for name, data in stems.items():
        (tmp_path / "stems" / f"{name}.flac").write_bytes(data)
    return {name: str(tmp_path / "stems" / f"{name}.flac") for name in stems}


def rendered(renderer, stem_files, rendition: str, folder: Path) -> list[tuple[str, bytes]]:
    """`(track, bytes)` in the order the pool gave them out, each from its file."""
    return [(name, Path(path).read_bytes())
            for name, path in renderer.render(stem_files, parse_rendition(rendition), folder)]


@pytest.fixture(scope="module")
def renderer():
    pool = Renderer(2)
    yield pool
    pool.close()


def test_track_sources():
    assert track_sources(parse_rendition("wav-16"), STEMS) == {f"{s}.wav": [s] for s in STEMS}
    assert track_sources(parse_rendition("mp3-128+vocals"), STEMS) == {
        "vocals.mp3": ["vocals"], "no_vocals.mp3": ["drums", "bass", "other"]}
    with pytest.raises(TrackError, match="guitar"):
        track_sources(parse_rendition("flac-24+guitar"), STEMS)


def test_pool_renders_every_track_deterministically(renderer, stems, stem_files, tmp_path):
    first = rendered(renderer, stem_files, "mp3-192", tmp_path)
    second = rendered(renderer, stem_files, "mp3-192", tmp_path)
    # Every stem exactly once, whatever order they finish in.
    assert sorted(name for name, _ in first) == sorted(f"{s}.mp3" for s in STEMS)
    assert dict(first) == dict(second)
    assert dict(first) == {f"{name}.mp3": render_track([data], "mp3", 192)
                           for name, data in stems.items()}


def test_pool_renders_two_stems(renderer, stems, stem_files, tmp_path):
    tracks = dict(rendered(renderer, stem_files, "flac-16+drums", tmp_path))
    assert tracks == {"drums.flac": render_track([stems["drums"]], "flac", 16),
                      "no_drums.flac": render_track([stems[s] for s in ("bass", "other",
                                                                        "vocals")], "flac", 16)}


def test_a_broken_stem_fails_the_rendition(renderer, stem_files, tmp_path):
    Path(stem_files["bass"]).write_bytes(b"not a flac")
    with pytest.raises(EncodeFailed, match="rendering failed"):
        rendered(renderer, stem_files, "wav-16", tmp_path)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_pool_processes_import_no_torch_and_leave_when_the_worker_is_killed():
    """A SIGKILLed (or os._exit-ed) worker must not leave its render processes behind."""
    script = ("import multiprocessing, time\n"
              "from worker.render.pool import Renderer\n"
              "renderer = Renderer(2)\n"
              "check = \"int('torch' in __import__('sys').modules)\"\n"
              "print(renderer.pool.submit(eval, check).result())\n"
              "print(*[p.pid for p in multiprocessing.active_children()], flush=True)\n"
              "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        torch_imported = parent.stdout.readline().strip()
        children = [int(pid) for pid in parent.stdout.readline().split()]
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        parent.stdout.close()
    assert torch_imported == "0"
    assert len(children) >= 2
    deadline = time.monotonic() + 10
    while any(map(_running, children)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_running, children))
