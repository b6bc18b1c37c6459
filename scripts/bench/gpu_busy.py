"""How busy the separating device stays when the songs' stems must also be written.

The worker separates one song while the previous song's stems are written (at most one song
waits), so the device idles whenever writing a song takes longer than separating one. Two ways
of writing are compared on the same songs and cores:

- apart: the separation worker writes lossless stems (FLAC 24-bit, libsndfile, which releases
  the GIL, so threads suffice) and leaves mp3 rendering to render workers elsewhere;
- inside: the separation worker encodes the four mp3s itself (LAME at 320 kbps, quality 2, as
  the Demucs CLI; LAME holds the GIL, so a pool of processes).

Busy fraction = seconds spent separating / wall seconds from the first song to the last write.
"""

from __future__ import annotations

import io
import multiprocessing
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import lameenc
import numpy as np
import torch

from common import flac
from scripts.bench import bench_model


def song(seconds: float, seed: int = 0) -> torch.Tensor:
    """A `[2, samples]` 44.1 kHz test song at a listening level (not normalised)."""
    return 0.2 * bench_model.test_signal(seconds, seed)


def write_flac(stem: np.ndarray, samplerate: int) -> int:
    """Bytes of one stem as the separation worker stores it (common/flac.py)."""
    buffer = io.BytesIO()
    with flac.writer(buffer, samplerate, stem.shape[0]) as out:
        flac.write_block(out, np.array(stem.T, dtype=np.float32))
    return len(buffer.getbuffer())


def write_mp3(stem: np.ndarray, samplerate: int) -> int:
    """Bytes of one stem as mp3 at 320 kbps, LAME quality 2, as the Demucs CLI encodes."""
    pcm = (np.clip(stem, -1, 1) * (2**15 - 1)).astype("<i2").T.copy()
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(320)
    encoder.set_in_sample_rate(samplerate)
    encoder.set_channels(pcm.shape[1])
    encoder.set_quality(2)
    return len(encoder.encode(pcm.tobytes()) + encoder.flush())


def _pool(how: str, cores: int) -> Executor:
    if how == "apart":
        return ThreadPoolExecutor(cores)
    return ProcessPoolExecutor(cores, multiprocessing.get_context("spawn"))


def busy_fraction(separator, seconds: float, songs: int, how: str, cores: int) -> dict:
    """Separate `songs` songs back to back, writing each song's stems `how` on `cores`."""
    write = write_flac if how == "apart" else write_mp3
    mixes = [song(seconds, seed) for seed in range(songs)]
    separator.separate(mixes[0][..., : separator.samplerate])  # kernels ready, untimed
    with _pool(how, cores) as pool:
        list(pool.map(len, [b""] * cores))  # processes started before the clock
        separating = 0.0
        waiting: list[Future] = []
        started = time.perf_counter()
        for mix in mixes:
            began = time.perf_counter()
            stems = separator.separate(mix)
            if separator.device.type == "cuda":
                torch.cuda.synchronize(separator.device)
            separating += time.perf_counter() - began
            for future in waiting:  # the previous song's stems: at most one song waits
                future.result()
            waiting = [pool.submit(write, stem.numpy(), separator.samplerate)
                       for stem in stems.values()]
        written = sum(future.result() for future in waiting)
        wall = time.perf_counter() - started
    return {"songs": songs, "cores": cores, "separating_s": round(separating, 3),
            "wall_s": round(wall, 3), "busy": round(separating / wall, 3),
            "last_song_bytes": written}
