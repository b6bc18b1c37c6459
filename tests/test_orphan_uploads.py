"""Multipart uploads of an attempt that died: aborted when its job is reclaimed or retried, so
that their parts do not fill the store (an S3 server keeps them, invisible, until a lifecycle
rule ends them). Real Redis, the real S3 server, uploads made by the production classes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from common import flac, keys
from common.jobs import JobStatus, JobStore
from common.records import render_id
from common.storage import PartUpload, Storage, job_prefix, lossless_object, rendition_object
from scripts.local import stack
from tests.helpers import MODEL, wait_for, wait_for_job
from worker.runtime.heartbeat import beat, is_alive
from worker.runtime.reaper import reap_once
from worker.separation.lossless import StemSink

DEAD, OTHER = "a" * 64, "b" * 64


def open_uploads(storage: Storage, prefix: str = "") -> list[str]:
    """Objects of the output bucket (under `prefix`) with a multipart upload still open."""
    uploads = storage.client._list_multipart_uploads(storage.output_bucket, prefix=prefix)
    return sorted(upload.object_name for upload in uploads.uploads)


def half_sent_stem(storage: Storage, song_hash: str, stem: str = "drums") -> StemSink:
    """A stem whose encoder sent parts to the store and then stopped, as a killed worker's."""
    sink = StemSink(storage.lossless_upload(song_hash, MODEL, stem), 44100, 2)
    noise = np.random.default_rng(0).uniform(-4, 4, (2, 45 * 44100)).astype(np.float32)
    sink.write(noise)  # 45 s of noise: more than two parts of FLAC
    wait_for(lambda: sink.upload.parts, 60, "no part was sent")
    return sink


def died_holding(jobs: JobStore, song_hash: str, worker: str) -> str:
    """A separation started by `worker`, whose heartbeat then expired."""
    jobs.enqueue(song_hash, None, 10)
    job_id = jobs.claim(worker, timeout=1)
    assert job_id and jobs.start(job_id, worker)
    beat(jobs.redis, worker, 1)
    wait_for(lambda: not is_alive(jobs.redis, worker), 5, "the heartbeat did not expire")
    return job_id


def test_the_reaper_aborts_a_dead_attempts_uploads_before_requeueing_its_job(jobs, storage):
    died_holding(jobs, DEAD, "dead-worker")
    half_sent_stem(storage, DEAD)
    live = PartUpload(storage, storage.output_bucket, lossless_object(OTHER, MODEL, "drums"),
                      "audio/flac")
    live.put_part(1, b"\0" * PartUpload.PART_SIZE)  # a live job's upload: left alone
    assert open_uploads(storage) == sorted([lossless_object(DEAD, MODEL, "drums"),
                                            lossless_object(OTHER, MODEL, "drums")])

    assert reap_once(jobs, "reaper", 3, storage=storage) == {DEAD: "requeued"}

    assert open_uploads(storage) == [lossless_object(OTHER, MODEL, "drums")]
    job = jobs.get(DEAD)
    assert (job.status, job.deaths) == (JobStatus.QUEUED, 1)


def test_a_dead_render_attempts_uploads_are_aborted_and_a_poison_jobs_too(jobs, storage):
    """Where a render job writes (`<hash>/<model>/<rendition>/`), and a job failed for good."""
    track = rendition_object(DEAD, MODEL, "wav-16", "drums.wav")
    PartUpload(storage, storage.output_bucket, track, "audio/wav").put_part(
        1, b"\0" * PartUpload.PART_SIZE)
    render = render_id(DEAD, MODEL, "wav-16")
    jobs.redis.rpush(keys.processing("dead-renderer"), render)
    jobs.redis.sadd(keys.WORKERS, "dead-renderer")
    separation = died_holding(jobs, OTHER, "dead-worker")
    half_sent_stem(storage, OTHER, "vocals")

    outcomes = reap_once(jobs, "reaper", 0, storage=storage)  # no death allowed: failed

    assert open_uploads(storage) == []
    assert outcomes[separation] == "failed"


def test_a_live_workers_reaper_aborts_the_uploads_of_a_worker_that_died(jobs, storage,
                                                                          run_worker):
    died_holding(jobs, DEAD, "dead-worker")
    half_sent_stem(storage, DEAD)
    run_worker(REAPER_INTERVAL_S="1")
    # Requeued after the abort; then the live worker finds no upload of the song and fails it.
    wait_for_job(jobs, DEAD, lambda job: job.deaths == 1)
    assert open_uploads(storage) == []


STEMS = ["drums", "bass", "other", "vocals"]


def quiet_stems(seconds: int) -> bytes:
    """A stem of `seconds` of near silence as the separation worker stores it, written a
    minute at a time (small to store, full size once rendered as wav)."""
    minute = np.full((60 * 44100, 2), 1e-4, np.float32)
    out = io.BytesIO()
    with flac.writer(out, 44100, 2) as stem:
        for _ in range(seconds // 60):
            flac.write_block(stem, minute)
    return out.getvalue()


def handed_to_render(jobs: JobStore, storage: Storage, song_hash: str, seconds: int,
                     rendition: str) -> str:
    """A song whose stems are stored and whose separation handed off to the render job of
    `rendition`; that job's id."""
    data = quiet_stems(seconds)
    jobs.register_model(MODEL, STEMS)
    jobs.enqueue(song_hash, None, 100, model=MODEL, rendition=rendition)
    job_id = jobs.claim("test-separator", 1, queue=jobs.queue_for(MODEL))
    token = jobs.start(job_id, "test-separator")
    for stem in STEMS:
        storage.put_lossless(song_hash, MODEL, stem, data)
    render = render_id(song_hash, MODEL, rendition)
    assert jobs.hand_off(job_id, "test-separator", token, song_hash, render, {}) == "rendering"
    return render


@pytest.fixture
def render_worker(service_env, tmp_path):
    """Starts a render worker process under a worker id (`render_worker(id)`); all stopped
    after."""
    started = []

    def start(worker_id: str, **extra: str):
        env = {**service_env, "HEARTBEAT_TTL_S": "3", "REAPER_INTERVAL_S": "1",
               "RENDER_PROCESSES": "1", "WORKER_ID": worker_id, **extra}
        started.append(stack.start_render(env, tmp_path / f"{worker_id}-{len(started)}.log"))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            stack.stop(process, timeout=10)
        stack.kill_group(process)


def done(jobs: JobStore, job_id: str):
    return wait_for_job(jobs, job_id, lambda j: j.status in (JobStatus.DONE, JobStatus.FAILED),
                        timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("max_deaths", ["3", "1"])
def test_a_render_worker_killed_mid_upload_aborts_it_when_it_comes_back_under_its_id(
        jobs, storage, render_worker, max_deaths):
    """kill -9 while a long wav track goes up in parts; the container restarts in its pod, so
    the worker comes back under the same id, before any reaper saw it dead. With one death
    allowed the job fails there and then: no later attempt aborts what it left."""
    song = "e" * 64
    render = handed_to_render(jobs, storage, song, 480, "wav-24+vocals")  # 2 tracks of 80 MB
    prefix = job_prefix(song, MODEL, "wav-24+vocals")
    first = render_worker("render-in-pod")
    wait_for(lambda: open_uploads(storage, prefix), 240, "no upload was started",
             interval=0.02)
    stack.kill_group(first)  # kill -9, with its pool
    left = open_uploads(storage, prefix)
    assert left, "the upload ended before the kill: nothing to check"

    render_worker("render-in-pod", MAX_DEATHS=max_deaths)

    job = done(jobs, render)
    assert open_uploads(storage) == []
    if max_deaths == "1":
        assert job.status is JobStatus.FAILED and job.error.startswith("worker_lost")
        return
    assert (job.status, job.error, job.deaths) == (JobStatus.DONE, "", 1)
    assert sorted(storage.names_under(prefix)) == ["no_vocals.wav", "vocals.wav"]


@pytest.mark.slow
def test_a_render_attempt_aborts_what_an_earlier_attempt_left_open_before_storing(
        jobs, storage, render_worker):
    """Retried after an attempt whose uploads no reaper could abort (the store was down)."""
    song = "f" * 64
    render = handed_to_render(jobs, storage, song, 60, "mp3-320")
    left = PartUpload(storage, storage.output_bucket,
                      rendition_object(song, MODEL, "mp3-320", "drums.mp3"), "audio/mpeg")
    left.put_part(1, b"\0" * PartUpload.PART_SIZE)
    other = PartUpload(storage, storage.output_bucket,
                       rendition_object(song, MODEL, "mp3-320+vocals", "vocals.mp3"), "audio/mpeg")
    other.put_part(1, b"\0" * PartUpload.PART_SIZE)  # another job's: left alone

    render_worker("render-retry")

    assert done(jobs, render).status is JobStatus.DONE
    assert open_uploads(storage) == [other.name]
    other.abort()
