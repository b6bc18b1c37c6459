"""The `peaks` operation: waveform peaks of every stem and of their mix, at a few zoom levels.

Each file is `<stem>.<samples per peak>.dat` in audiowaveform's binary format (version 1,
8-bit): a 20-byte header (version, flags, sample rate, samples per peak, count, little-endian
32-bit) then (min, max) int8 pairs over both channels. A page draws a stem from them without
decoding it. One pass over a stem, a block at a time, makes all its levels.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Generator, Mapping
from contextlib import ExitStack

import numpy as np

from worker.render.encode import BLOCK
from worker.render.mix import mixed_blocks, stem_format
from worker.render.operations import OperationInput, Output

LEVELS = (512, 4096, 32768)  # samples per peak; each divides BLOCK
MIX = "mix"  # the name of the sum of every stem
_HEADER = struct.Struct("<iiiiI")
_VERSION, _EIGHT_BIT = 1, 1


def _block_peaks(wav: np.ndarray, spp: int) -> np.ndarray:
    """(min, max) int8 pairs, interleaved, of `[channels, frames]` in buckets of `spp`."""
    frames = wav.shape[1]
    buckets = -(-frames // spp)
    if buckets * spp != frames:  # the song's last bucket: its own samples only
        wav = np.pad(wav, ((0, 0), (0, buckets * spp - frames)), mode="edge")
    shaped = wav.reshape(wav.shape[0], buckets, spp)
    pairs = np.stack([shaped.min(axis=(0, 2)), shaped.max(axis=(0, 2))], axis=1)
    return np.round(np.clip(pairs, -1, 1) * 127).astype(np.int8).reshape(-1)


def peaks_files(sources: Mapping[str, str], gains: Mapping[str, float], name: str,
                folder: str, block: int = BLOCK) -> list[str]:
    """Write `<name>.<spp>.dat` for each level, of the sum of `sources` times `gains`, into
    `folder`; the file names."""
    rate, _, _ = stem_format(sources)
    names = [f"{name}.{spp}.dat" for spp in LEVELS]
    with ExitStack() as files:
        # Each block's peaks go to the files at once, nothing held; the headers' counts last.
        outs = [files.enter_context(open(os.path.join(folder, n), "wb")) for n in names]
        for out in outs:
            out.seek(_HEADER.size)
        counts = [0] * len(LEVELS)
        for wav in mixed_blocks(sources, gains, block=block):
            for n, (out, spp) in enumerate(zip(outs, LEVELS, strict=True)):
                pairs = _block_peaks(wav, spp)
                out.write(pairs.tobytes())
                counts[n] += len(pairs) // 2
        for out, spp, count in zip(outs, LEVELS, counts, strict=True):
            out.seek(0)
            out.write(_HEADER.pack(_VERSION, _EIGHT_BIT, rate, spp, count))
    return names


def read_peaks(data: bytes) -> tuple[int, int, np.ndarray]:
    """(sample rate, samples per peak, `[count, 2]` int8 min/max) of a .dat file."""
    version, flags, rate, spp, count = _HEADER.unpack_from(data)
    if (version, flags) != (_VERSION, _EIGHT_BIT):
        raise ValueError(f"not an 8-bit version 1 peaks file ({version}, {flags})")
    pairs = np.frombuffer(data, np.int8, count * 2, _HEADER.size).reshape(count, 2)
    return rate, spp, pairs


def peaks(job: OperationInput) -> Generator[Output, None, None]:
    """Peaks of each stem and of the mix, made in parallel by the pool."""
    calls = [({stem: path}, {stem: 1.0}, stem, job.folder) for stem, path in job.stems.items()]
    calls.append((job.stems, dict.fromkeys(job.stems, 1.0), MIX, job.folder))
    made = job.renderer.map(peaks_files, calls)
    names = [name for names in made for name in names]
    for done, name in enumerate(names, 1):
        yield name, os.path.join(job.folder, name), "application/octet-stream"
        job.progress(done / len(names))
