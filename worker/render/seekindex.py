"""The `seekindex` operation: where each lossless stem's FLAC frames start (common/flacindex.py),
one JSON file for the song, so that the page plays the stems by byte range, any stretch alone.

`seekindex.json` is `{"stems": {stem: index}}`, each index holding the stem's sample rate,
channels, bits, total samples, header bytes, file bytes and [first sample, byte offset] of a
frame every 1.5 s. One streamed pass per stem, the stems in parallel in the pool.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator

from common.flacindex import build_index
from worker.render.operations import OperationInput, Output

NAME = "seekindex.json"


def index_file(path: str) -> dict:
    """The seek index of the FLAC file at `path`, as JSON."""
    with open(path, "rb") as stem:
        return build_index(stem).as_json()


def seekindex(job: OperationInput) -> Generator[Output, None, None]:
    """The seek index of every stem, in one file."""
    made = job.renderer.map(index_file, [(path,) for path in job.stems.values()])
    path = os.path.join(job.folder, NAME)
    with open(path, "w") as out:
        json.dump({"stems": dict(zip(job.stems, made, strict=True))}, out,
                  separators=(",", ":"))
    job.progress(1.0)
    yield NAME, path, "application/json"
