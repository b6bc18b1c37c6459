"""The separation worker with cancel, delete, expiry and a second model, in-process, on the
real Redis and S3 servers and real Demucs code: demucs_unittest, and a tiny six-stem HTDemucs
written by the test (one-second segments, so a running song reaches many segment ends)."""

from __future__ import annotations

import hashlib

import pytest

from common import keys
from common.jobs import CancelResult, JobStatus, JobStore
from common.songs import delete_song
from tests.helpers import b64, put_song, wait_for, wait_for_job, write_tiny_htdemucs

pytestmark = pytest.mark.timeout(240)
TINY = "tiny6"  # the second model's name


@pytest.fixture
def tiny_repo(tmp_path):
    """A folder holding the tiny six-stem model; its stems."""
    return tmp_path, write_tiny_htdemucs(tmp_path, TINY)


def upload(storage, jobs, mp3: bytes, model: str = "", **enqueue) -> str:
    """Store a song and queue it for `model`, as the gateway does; returns its hash."""
    song_hash = hashlib.sha256(b64(mp3).encode()).hexdigest()
    put_song(storage, song_hash, mp3)
    jobs.enqueue(song_hash, None, 100, model=model, **enqueue)
    return song_hash


def objects_of(storage, song_hash: str) -> list[str]:
    """Every object of a song in either bucket."""
    return [obj.object_name for bucket in (storage.songs_bucket, storage.output_bucket)
            for obj in storage.client.list_objects(bucket, recursive=True)
            if obj.object_name.startswith(song_hash)]


def keys_of(redis_client, song_hash: str) -> list[str]:
    """Every Redis key that names the song, or a list or set that holds one of its jobs (the
    log lines in `logging` and the deletion counter, kept a day on purpose, aside)."""
    found = [key for key in redis_client.keys("*")
             if song_hash in key and key != keys.deletions(song_hash)]
    for key in set(redis_client.keys("*")) - {keys.LOGGING}:
        kind = redis_client.type(key)
        members = (redis_client.lrange(key, 0, -1) if kind == "list" else
                   redis_client.smembers(key) if kind == "set" else
                   redis_client.zrange(key, 0, -1) if kind == "zset" else [])
        found += [key for member in members if song_hash in member]
    return found


def running(jobs, job_id: str):
    return wait_for_job(jobs, job_id, lambda j: j.status == "processing" and j.progress > 0,
                        what=f"{job_id} never ran")


def test_two_models_are_served_by_two_workers_at_once(run_worker, jobs, storage, tiny_repo,
                                                      make_mp3):
    folder, tiny_stems = tiny_repo
    served = {"DEMUCS_MODELS": f"demucs_unittest,{TINY}", "DEFAULT_MODEL": "demucs_unittest"}
    default = run_worker(**served, WORKER_ID="default-worker")
    other = run_worker(**served, DEMUCS_MODEL=TINY, DEMUCS_REPO=str(folder),
                       WORKER_ID="tiny-worker")
    wait_for(lambda: len(jobs.models()) == 2, 120, "the workers never registered their models")
    assert jobs.models() == {"demucs_unittest": ["drums", "bass", "other", "vocals"],
                             TINY: tiny_stems}
    first = upload(storage, jobs, make_mp3(8, seed=21), model=TINY)
    second = upload(storage, jobs, make_mp3(8, seed=22))
    # Both separate at the same time, each model's song on its own worker.
    wait_for(lambda: all(jobs.get(j).status == "processing" for j in (f"{first}:{TINY}", second)),
             120, "the two songs were never separated at the same time", interval=0.02)
    for job_id, worker, model, stems in ((f"{first}:{TINY}", other, TINY, tiny_stems),
                                         (second, default, "demucs_unittest",
                                          jobs.models()["demucs_unittest"])):
        job = wait_for_job(jobs, job_id, lambda j: bool(j.awaiting), what=f"{job_id} separated")
        assert (job.worker, job.model) == (worker.worker_id, model)
        assert job.awaiting == f"{job.song}:{model}:mp3-320"
        stored = sorted(name.rsplit("/", 1)[1] for name in objects_of(storage, job.song)
                        if f"/{model}/stems/" in name)
        assert stored == sorted(f"{stem}.flac" for stem in stems)


def tiny_worker(run_worker, folder, **extra: str):
    """A worker of the tiny model, the deployment's default."""
    return run_worker(DEMUCS_MODELS=TINY, DEMUCS_MODEL=TINY, DEMUCS_REPO=str(folder), **extra)


@pytest.fixture
def tiny_jobs(redis_client):
    """A JobStore of a deployment whose default model is the tiny one."""
    return JobStore(redis_client, TINY)


def test_a_cancelled_song_stops_at_its_next_segment_and_leaves_no_stem(
        run_worker, tiny_jobs, storage, tiny_repo, make_mp3):
    jobs = tiny_jobs
    worker = tiny_worker(run_worker, tiny_repo[0])
    mp3 = make_mp3(12, seed=23)
    song_hash = upload(storage, jobs, mp3)
    running(jobs, song_hash)
    assert jobs.cancel(song_hash) is CancelResult.STOPPING
    job = wait_for_job(jobs, song_hash, lambda j: j.status == "cancelled", 60)
    assert job.progress < 0.9 and not job.awaiting  # stopped before the end
    assert objects_of(storage, song_hash) == [f"{song_hash}.mp3"]  # only the upload
    assert jobs.in_flight() == [] and jobs.claimed_by(worker.worker_id) == []
    assert jobs.queued(keys.RENDER_QUEUE) == []
    # Submitted again, it is queued again and separated.
    assert jobs.enqueue(song_hash, None, 100).value == "retried"
    job = wait_for_job(jobs, song_hash, lambda j: bool(j.awaiting), 120)
    assert job.attempts == 1 and not job.cancel


def test_a_song_deleted_while_it_is_separated_leaves_nothing(run_worker, tiny_jobs, storage,
                                                             redis_client, tiny_repo, make_mp3):
    jobs = tiny_jobs
    worker = tiny_worker(run_worker, tiny_repo[0])
    song_hash = upload(storage, jobs, make_mp3(12, seed=24))
    running(jobs, song_hash)
    assert delete_song(jobs, storage, song_hash).jobs == 1
    # The worker learns at its next segment that the job is gone, and stores nothing.
    wait_for(lambda: not jobs.claimed_by(worker.worker_id) and not jobs.in_flight(), 60,
             "the worker kept the deleted song")
    next_song = upload(storage, jobs, make_mp3(2, seed=25))  # and it goes on with the next
    wait_for_job(jobs, next_song, lambda j: bool(j.awaiting), 120)
    assert objects_of(storage, song_hash) == []
    assert keys_of(redis_client, song_hash) == []
    assert jobs.get(song_hash) is None


def test_songs_expire_as_deleted_once_their_last_job_ended_long_enough_ago(
        run_worker, jobs, storage, redis_client, make_mp3, make_client):
    api = make_client()
    cancelled = upload(storage, jobs, make_mp3(2, seed=26))
    jobs.cancel(cancelled)
    # 3.6 s: the worker separates the other song meanwhile; it is then waiting for its render
    # job (not ended), so it stays.
    run_worker(RESULT_TTL_HOURS="0.001", REAPER_INTERVAL_S="1")
    kept = upload(storage, jobs, make_mp3(2, seed=27))
    assert api.get(f"/apiv1/status/{cancelled}").status_code == 200
    wait_for(lambda: jobs.get(cancelled) is None and not objects_of(storage, cancelled), 60,
             "the cancelled song never expired")
    assert keys_of(redis_client, cancelled) == []
    assert api.get(f"/apiv1/status/{cancelled}").status_code == 404
    job = wait_for_job(jobs, kept, lambda j: bool(j.awaiting), 120)
    assert job.status is JobStatus.PROCESSING and objects_of(storage, kept)


def test_a_worker_handed_another_models_job_hands_it_back_for_that_models_worker(
        run_worker, tiny_jobs, storage, tiny_repo, make_mp3, caplog):
    # The gateway's default model is the tiny one; this worker's deployment says otherwise.
    wrong = run_worker(WORKER_ID="wrong-worker")
    song_hash = upload(storage, tiny_jobs, make_mp3(2, seed=28))
    wait_for(lambda: any(r.levelname == "ERROR" and song_hash in r.getMessage()
                         for r in caplog.records), 60, "the wrong worker never refused the job")
    refusal = next(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert f"model {TINY}" in refusal and "model demucs_unittest" in refusal
    job = tiny_jobs.get(song_hash)
    assert job.status in (JobStatus.QUEUED, JobStatus.PROCESSING) and not job.error
    assert not storage.names_under(f"{song_hash}/demucs_unittest/")
    # Back on its queue, not failed nor lost: its own model's worker separates it.
    tiny_worker(run_worker, tiny_repo[0], WORKER_ID="tiny-worker")
    job = wait_for_job(tiny_jobs, song_hash, lambda j: bool(j.awaiting), 120)
    assert (job.worker, job.model) == ("tiny-worker", TINY)
    assert wrong.jobs.claimed_by(wrong.worker_id) == []
