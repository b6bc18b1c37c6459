"""Stem encoding: the Demucs CLI's PCM arithmetic, decodable mp3s, the same bytes every time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sphn
import torch
from demucs.audio import i16_pcm
from demucs.audio import prevent_clip as demucs_prevent_clip

from worker.encode import StemEncoder, encode_mp3, to_pcm16

RATE = 44100
LAME_FRAME = 1152
ROOT = Path(__file__).resolve().parent.parent


def stem(seconds: float, seed: int, gain: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (gain * rng.standard_normal((2, int(seconds * RATE) + 17))).astype(np.float32)


@pytest.mark.parametrize("gain", [0.2, 3.0])  # quiet, and loud enough to be rescaled
def test_pcm_is_what_the_demucs_cli_writes(gain):
    wav = stem(1, seed=1, gain=gain)
    expected = i16_pcm(demucs_prevent_clip(torch.from_numpy(wav), "rescale")).t().numpy()
    pcm = to_pcm16(wav)
    assert pcm.dtype == np.dtype("<i2") and pcm.flags.c_contiguous
    np.testing.assert_array_equal(pcm, expected)


def test_mp3_decodes_to_the_stem_length(tmp_path):
    wav = stem(2, seed=2, gain=0.3)
    path = tmp_path / "stem.mp3"
    path.write_bytes(encode_mp3(wav, RATE, 320))
    data, rate = sphn.read(str(path))
    assert rate == RATE and data.shape[0] == 2
    # LAME adds its encoder delay and pads the last frame; nothing is lost.
    assert wav.shape[1] <= data.shape[1] <= wav.shape[1] + 2 * LAME_FRAME
    assert np.abs(data).max() > 0.1


def test_pool_encodes_every_stem_deterministically():
    stems = {name: stem(1.5, seed, 0.3) for seed, name in enumerate(["drums", "bass", "other",
                                                                      "vocals"])}
    encoder = StemEncoder(2, RATE, 192)
    try:
        first, second = list(encoder.encode_each(stems)), list(encoder.encode_each(stems))
    finally:
        encoder.close()
    # Every stem exactly once, whatever order they finish in.
    assert sorted(name for name, _ in first) == sorted(stems)
    assert dict(first) == dict(second)
    assert dict(first) == {name: encode_mp3(wav, RATE, 192) for name, wav in stems.items()}


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_pool_processes_leave_when_the_worker_is_killed():
    """A SIGKILLed (or os._exit-ed) worker must not leave its encoding processes behind."""
    script = ("import multiprocessing, time\n"
              "import numpy as np\n"
              "from worker.encode import StemEncoder\n"
              "encoder = StemEncoder(2, 44100, 128)\n"
              "list(encoder.encode_each({'a': np.zeros((2, 4410), np.float32)}))\n"
              "print(*[p.pid for p in multiprocessing.active_children()], flush=True)\n"
              "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        children = [int(pid) for pid in parent.stdout.readline().split()]
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        parent.stdout.close()
    assert len(children) >= 2
    deadline = time.monotonic() + 10
    while any(map(_running, children)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_running, children))
