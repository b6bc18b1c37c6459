"""The `mix` operation: one mixdown of a song's stems (gains, mutes, solos, region, format).

The mix is the sum of the audible stems, each times its gain, over the region asked for; then,
as for a two-stem track, the Demucs CLI's clip rescaling of the whole and the format's PCM. So a
mix that mutes one stem equals that stem's `no_<stem>` track, and one whose sum stays under full
scale equals what a browser plays of the stems at those gains. Made a block at a time in a pool
process, in two passes (peak, then encode): memory does not grow with the song.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from contextlib import ExitStack

import numpy as np
import soundfile

from common import flac, mixes
from worker.render.encode import BLOCK, clip_scale, open_writer, quantize
from worker.render.operations import OperationInput, Output, output_path


def mixed_blocks(sources: Mapping[str, str], gains: Mapping[str, float], start: float = 0.0,
                 end: float | None = None, block: int = BLOCK) -> Iterator[np.ndarray]:
    """`[channels, frames]` float32 blocks of the sum of `{stem: lossless file}` times
    `{stem: linear gain}` (stems without a gain are left out), from `start` to `end` seconds."""
    with ExitStack() as files:
        stems = {s: files.enter_context(soundfile.SoundFile(path)) for s, path in sources.items()}
        first = next(iter(stems.values()))
        rate, frames = first.samplerate, first.frames
        begin = min(frames, round(start * rate))
        stop = frames if end is None else min(frames, round(end * rate))
        audible = [(stems[s], g) for s, g in gains.items()]
        for stem, _ in audible:
            stem.seek(begin)
        position = begin
        while position < stop:
            count = min(block, stop - position)
            total = np.zeros((first.channels, count), np.float32)
            for stem, gain in audible:
                total += flac.read_block(stem, count, gain)
            position += count
            yield total


def stem_format(sources: Mapping[str, str]) -> tuple[int, int, int]:
    """(rate, frames, channels) shared by a song's stems; ValueError if they differ."""
    shapes = set()
    for path in sources.values():
        info = soundfile.info(path)
        shapes.add((info.samplerate, info.frames, info.channels))
    if len(shapes) != 1:
        raise ValueError("the stems of one song differ in rate or length")
    return shapes.pop()


def mix_file(sources: dict[str, str], params: dict, path: str, block: int = BLOCK) -> None:
    """Write the mix that canonical `params` (common/mixes.py) describe into the file `path`."""
    rate, _, channels = stem_format(sources)
    gains = mixes.linear_gains(params)
    region = (params.get("start") or 0.0, params.get("end"))
    peak = max((np.abs(wav).max(initial=np.float32(0))
                for wav in mixed_blocks(sources, gains, *region, block)), default=np.float32(0))
    fmt, quality = params["format"], params["quality"]
    scale, bits = clip_scale(peak), 16 if fmt == "mp3" else quality
    with open(path, "wb") as out, open_writer(out, rate, channels, fmt, quality) as write:
        for wav in mixed_blocks(sources, gains, *region, block):
            write(quantize(wav, scale, bits))


def mix(job: OperationInput) -> Generator[Output, None, None]:
    """The mix of the job's parameters, made in a pool process: `mix.<ext>`."""
    name = mixes.mix_name(job.params)
    path = output_path(job, name)
    job.renderer.map(mix_file, [(job.stems, job.params, path)])
    yield name, path, mixes.mime(job.params)
    job.progress(1.0)
