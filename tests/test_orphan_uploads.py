"""Multipart uploads of an attempt that died: aborted when its job is reclaimed or retried, so
that their parts do not fill the store (an S3 server keeps them, invisible, until a lifecycle
rule ends them). Real Redis, the real S3 server, uploads made by the production classes."""

from __future__ import annotations

import numpy as np

from common import keys
from common.jobs import JobStatus, JobStore
from common.records import render_id
from common.storage import PartUpload, Storage, lossless_object, rendition_object
from tests.helpers import MODEL, wait_for, wait_for_job
from worker.runtime.heartbeat import beat, is_alive
from worker.runtime.reaper import reap_once
from worker.separation.lossless import StemSink

DEAD, OTHER = "a" * 64, "b" * 64


def open_uploads(storage: Storage) -> list[str]:
    """Objects of the output bucket with a multipart upload still open."""
    uploads = storage.client._list_multipart_uploads(storage.output_bucket).uploads
    return sorted(upload.object_name for upload in uploads)


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
