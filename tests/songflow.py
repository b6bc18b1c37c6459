"""A song taken through its jobs as the workers take it, on the real Redis and S3 servers:
lossless stems stored and handed off by a 'separation', tracks made from them by the render
code and stored by a 'render'. The gateway's routes see exactly what workers leave behind."""

from __future__ import annotations

import io

from common import keys, tracks
from common.jobs import JobStatus, JobStore
from common.storage import Storage, lossless_object, rendition_object
from scripts.local.make_samples import synthesize
from tests.stems import render_track, write_lossless
from worker.render.pool import track_sources

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


def render_next(jobs: JobStore, storage: Storage,
                stems: tuple[str, ...] = tracks.FOUR_STEMS) -> str:
    """Claim the oldest render job, make its tracks from the lossless stems, store them."""
    job_id = jobs.claim("cpu", 1, keys.RENDER_QUEUE)
    job = jobs.get(job_id)
    token = jobs.start(job_id, "cpu")
    rendition = tracks.parse_rendition(job.rendition)
    lossless = {stem: storage.client.get_object(
        storage.output_bucket, lossless_object(job.song, job.model, stem)).read()
        for stem in stems}
    names = []
    for name, sources in track_sources(rendition, list(stems)).items():
        data = render_track([lossless[s] for s in sources], rendition.format, rendition.quality)
        put_output(storage, rendition_object(job.song, job.model, rendition.id, name), data)
        names.append(name)
    assert jobs.finish(job_id, "cpu", token, JobStatus.DONE, tracks=names, parent=job.parent)
    return job_id


def separate_and_render(jobs: JobStore, storage: Storage, song_hash: str, model: str = "",
                        stems: tuple[str, ...] = tracks.FOUR_STEMS) -> None:
    separate(jobs, storage, song_hash, model, stems)
    render_next(jobs, storage, stems)
