"""What a streamed separation holds between segments: nothing of a stretch once handed on.

The whole-process figures are `python -m scripts.bench_stack_memory`'s; these tests pin the
causes found there, cheaply: each held a stretch (about 42 MB for a 30 s stride of four
stereo stems) while the next segment ran.
"""

from __future__ import annotations

import gc
import io
import subprocess
import sys
import weakref

import pytest
import torch

from common.storage import Storage
from scripts.make_samples import song_mp3
from worker.separation.lossless import StemSink
from worker.separation.rolling import OverlapAdd

MODEL = "demucs_unittest"


def test_the_overlap_add_keeps_only_the_samples_later_chunks_add_to():
    sums = OverlapAdd()
    weight = torch.ones(1000)
    sums.add(0, torch.ones(4, 2, 1000), weight)
    sums.add(750, torch.ones(4, 2, 1000), weight)
    stretch = sums.take(750)
    assert stretch.shape[-1] == 750
    assert sums.out is not None and sums.weights is not None
    assert sums.out.untyped_storage().nbytes() == 4 * 2 * 1000 * 4  # not the 1,750 added
    assert sums.weights.untyped_storage().nbytes() == 1000 * 4


def test_a_stem_sink_keeps_no_reference_to_the_stretch_it_was_given(storage):
    sink = StemSink(storage.lossless_upload("abc", MODEL, "drums"), 44100, 2)
    sink.write((torch.rand(2, 20 * 44100) - 0.5).numpy())  # keeps the encoder busy a while
    stretch = torch.rand(4, 2, 44100) - 0.5
    alive = weakref.ref(stretch)
    sink.write(stretch[0].numpy())  # queued behind the first
    del stretch
    gc.collect()
    try:
        assert alive() is None, "the sink holds the whole stretch while it encodes its stem"
    finally:
        sink.abort()


CHILD = """
import os
import sys

from common.settings import Settings
from common.storage import Storage
from worker.separation.lossless import separate_to_store
from worker.separation.separator import Separator

settings = Settings.from_env({**os.environ, "DEMUCS_MODEL": "demucs_unittest"})
separate_to_store(Separator(settings), Storage(settings), "h", sys.argv[1], "demucs_unittest",
                  max_seconds=3600, progress=lambda _: None)
status = open("/proc/self/status").read()
print(next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")))
"""


def peak_kb(service_env: dict, name: str) -> int:
    """VmHWM of a fresh process that separates upload `name` into stems in the store."""
    done = subprocess.run([sys.executable, "-c", CHILD, name], env=service_env, check=True,
                          capture_output=True, text=True, timeout=1800)
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_a_whole_process_peak_grows_little_from_a_60_s_song_to_a_180_s_one(service_env,
                                                                           storage: Storage):
    """demucs_unittest's 40 s segments: 60 s is one full segment, 180 s is five. The peak is
    one segment's activations (about 1.5 GB) plus what is held between segments; that hold
    grew by 300-390 MB (a stretch held twice, four stems' copies and encoder scratch, the
    overlap-add's old buffer) before it was cut, and is measured at about 100-180 MB since."""
    minute = song_mp3(60, seed=5)
    for minutes in (1, 3):
        data = minute * minutes
        storage.client.put_object(storage.songs_bucket, f"{minutes}.mp3",
                                  io.BytesIO(data), len(data))
    short, long = peak_kb(service_env, "1.mp3"), peak_kb(service_env, "3.mp3")
    assert (long - short) / 1024 < 230, f"peak {short // 1024} MB at 60 s, {long // 1024} at 180 s"
