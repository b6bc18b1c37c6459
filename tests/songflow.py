"""A song taken through its jobs as the workers take it, on the real Redis and S3 servers:
lossless stems stored and handed off by a 'separation', tracks (and the studio operations'
files) made from them by the render code and stored by a 'render'. The gateway's routes see
exactly what workers leave behind."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from common import keys, operations, tracks
from common.jobs import Job, JobStatus, JobStore
from common.storage import Storage, lossless_object, rendition_object
from scripts.local.make_samples import synthesize
from tests.stems import render_track, write_lossless
from worker.render import operations as render_operations
from worker.render.pool import Renderer, track_sources

RATE = 44100


def put_output(storage: Storage, name: str, data: bytes) -> None:
    storage.client.put_object(storage.output_bucket, name, io.BytesIO(data), len(data))


def separate(jobs: JobStore, storage: Storage, song_hash: str, model: str = "",
             stems: tuple[str, ...] = tracks.FOUR_STEMS, seconds: float = 1.0) -> str:
    """Claim and separate the song's queued job: store its lossless stems and hand it off."""
    model = model or jobs.default_model
    job_id = jobs.claim("gpu", 1, jobs.queue_for(model))
    assert job_id == jobs.separation_id(song_hash, model), job_id
    token = jobs.start(job_id, "gpu")
    for n, stem in enumerate(stems):
        wav = synthesize(seconds, RATE, seed=n) * (0.2 + 0.1 * n)
        put_output(storage, lossless_object(song_hash, model, stem), write_lossless(wav, RATE))
    job = jobs.get(job_id)
    rendition = job.rendition or "mp3-320"
    assert jobs.hand_off(job_id, "gpu", token, song_hash,
                        f"{song_hash}:{model}:{rendition}", {"separate": 0.1}) == "rendering"
    return job_id


class InProcess(Renderer):
    """The render pool's `map` run in this process, call after call: a song of a second has
    too little work to be worth spawning a pool for each test."""

    def __init__(self) -> None:
        self.processes = 1

    def map(self, function: Callable[..., Any], calls: list[tuple]) -> list[Any]:
        return [function(*args) for args in calls]


def render_next(jobs: JobStore, storage: Storage,
                stems: tuple[str, ...] = tracks.FOUR_STEMS) -> str:
    """Claim the oldest render job, make its tracks (or its operation's files) from the
    lossless stems, store them."""
    job_id = jobs.claim("cpu", 1, keys.RENDER_QUEUE)
    job = jobs.get(job_id)
    token = jobs.start(job_id, "cpu")
    lossless = {stem: storage.client.get_object(
        storage.output_bucket, lossless_object(job.song, job.model, stem)).read()
        for stem in stems}
    op = operations.parse_operation(job.rendition)
    made = _tracks(op, lossless) if op.rendition else _operation(job, op, lossless)
    for name, data in made.items():
        put_output(storage, rendition_object(job.song, job.model, op.id, name), data)
    assert jobs.finish(job_id, "cpu", token, JobStatus.DONE, tracks=list(made),
                       parent=job.parent)
    return job_id


def _tracks(op: operations.Operation, lossless: dict[str, bytes]) -> dict[str, bytes]:
    assert op.rendition is not None
    return {name: render_track([lossless[s] for s in sources], op.rendition.format,
                               op.rendition.quality)
            for name, sources in track_sources(op.rendition, list(lossless)).items()}


def _operation(job: Job, op: operations.Operation, lossless: dict[str, bytes]
               ) -> dict[str, bytes]:
    """The files a render operation makes, by the render worker's own handler."""
    handler = render_operations.handler_of(op.kind)
    assert handler is not None, op.kind
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for stem, data in lossless.items():
            paths[stem] = str(Path(folder, f"{stem}.flac"))
            Path(paths[stem]).write_bytes(data)
        work = render_operations.OperationInput(job.song, job.model, op, paths, folder,
                                                InProcess(), lambda _: None, job.params)
        with closing(handler(work)) as outputs:
            return {name: Path(path).read_bytes() for name, path, _ in outputs}


def render_all(jobs: JobStore, storage: Storage,
               stems: tuple[str, ...] = tracks.FOUR_STEMS) -> list[str]:
    """Make every queued render job, oldest first; their ids."""
    return [render_next(jobs, storage, stems) for _ in range(jobs.queue_length(keys.RENDER_QUEUE))]


def separate_and_render(jobs: JobStore, storage: Storage, song_hash: str, model: str = "",
                        stems: tuple[str, ...] = tracks.FOUR_STEMS) -> None:
    """Separate the song and make what its hand-off queued: its rendition, then its studio
    operations."""
    separate(jobs, storage, song_hash, model, stems)
    render_all(jobs, storage, stems)
