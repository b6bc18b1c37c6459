"""The render operations' registry: kind -> handler (common/operations.py names the kinds).

A handler turns a song's lossless stems into files: it gets an OperationInput and yields
`(file name, local path, mime)` for each output as soon as it is written; the render worker
stores each under `<hash>/<model>/<op>/<file name>` and removes the local file. Outputs are
made block by block (memory bounded by the block, not the song) and are byte-stable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from common import operations, tracks
from worker.render.pool import Renderer

Output = tuple[str, str, str]  # (file name, local path, mime)


@dataclass(frozen=True)
class OperationInput:
    """What a handler works from: the stems as local lossless files, in the model's order."""

    song: str
    model: str
    op: operations.Operation
    stems: dict[str, str]  # {stem: local FLAC path}
    folder: str  # scratch space for the outputs, removed after the job
    renderer: Renderer  # the render pool, for work worth spreading over processes
    progress: Callable[[float], None]
    params: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[OperationInput], Generator[Output, None, None]]


def rendition(job: OperationInput) -> Generator[Output, None, None]:
    """The tracks of a rendition, encoded in parallel by the pool, each given out when done."""
    assert job.op.rendition is not None  # parse_operation sets it for every rendition
    rendition = job.op.rendition.check(list(job.stems))
    total = len(rendition.track_names(list(job.stems)))
    with closing(job.renderer.render(job.stems, rendition, job.folder)) as rendered:
        for done, (track, path) in enumerate(rendered, 1):
            yield track, path, tracks.parse_track(track).mime
            job.progress(done / total)


def handlers() -> dict[str, Handler]:
    """kind -> handler, for every operation this worker makes."""
    # Imported here: each operation module imports OperationInput from this one.
    from worker.render import analysis, ensemble, mix, peaks, seekindex
    return {operations.RENDITION: rendition, operations.PEAKS: peaks.peaks,
            operations.ANALYSIS: analysis.analysis, operations.MIX: mix.mix,
            operations.STEMS: ensemble.ensemble_stems,
            operations.SEEKINDEX: seekindex.seekindex}


def handler_of(kind: str) -> Handler | None:
    """The handler of an operation kind; None where this worker has none."""
    return handlers().get(kind)


def output_path(job: OperationInput, name: str) -> str:
    """Where a handler writes its output `name`: in the job's scratch folder."""
    return os.path.join(job.folder, name)
