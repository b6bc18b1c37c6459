"""What a streamed separation holds between segments: nothing of a stretch once handed on.

The whole-process figures are `python -m scripts.bench.bench_stack_memory`'s; these tests pin the
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
from scripts.local.make_samples import song_mp3
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
    stem = stretch[0].numpy()  # a view: while it lives, so does every stem of the stretch
    alive = weakref.ref(stem)
    sink.write(stem)  # queued behind the first
    del stretch, stem
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


def high_water_kb():
    status = open("/proc/self/status").read()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))


settings = Settings.from_env({**os.environ, "DEMUCS_MODEL": "demucs_unittest"})
first = []
separate_to_store(Separator(settings), Storage(settings), "h", sys.argv[1], "demucs_unittest",
                  max_seconds=3600, progress=lambda _: first or first.append(high_water_kb()))
print(first[0], high_water_kb())
"""


@pytest.mark.slow
def test_a_whole_process_peak_grows_little_after_the_first_segment(service_env,
                                                                   storage: Storage):
    """180 s of demucs_unittest (40 s segments: five) in a fresh process, as the worker runs it.
    The peak after the first segment is one segment's activations (about 1.5 GB) and is a
    60 s song's peak too; what the later segments add is what is held between segments. It
    was 300-390 MB (a stretch held twice, the stems' views of it and whole-stem encoder
    scratch, the overlap-add's old buffer), then 70-130 MB while the blocks freed in one
    segment stayed in a heap pinned by what outlived them, and is 55-63 MB with large blocks
    mapped apart (worker/separation/heap.py). In one process, so that the first segment's own
    spread (about 150 MB) is not in the figure."""
    data = song_mp3(60, seed=5) * 3
    storage.client.put_object(storage.songs_bucket, "song.mp3", io.BytesIO(data), len(data))
    done = subprocess.run([sys.executable, "-c", CHILD, "song.mp3"], env=service_env,
                          capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    first, end = (int(kb) // 1024 for kb in done.stdout.split()[-2:])
    assert end - first < 80, f"peak {first} MB after the first segment, {end} MB at the end"
