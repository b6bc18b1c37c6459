"""Workers killed, frozen and stopped while they hold jobs: nothing is lost, one result counts.

Every test runs real gunicorn and worker processes (live_stack: HEARTBEAT_TTL_S=3,
REAPER_INTERVAL_S=1), real Redis and a real S3 server; faults are real signals.
"""

from __future__ import annotations

import hashlib
import signal
import time

import pytest
import requests
from minio.versioningconfig import ENABLED, VersioningConfig

from common import keys, tracks
from tests.helpers import (
    MODEL,
    STEMS,
    LiveWorker,
    b64,
    lossless_stems,
    mp3_stems,
    one_of_two_claims,
    put_song,
    reaper_passes,
    status,
    stop_process,
    submit,
    wait_for,
    wait_for_job,
    wait_for_status,
)
from tests.servers import CallbackReceiver, TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def store_song(storage, mp3: bytes) -> str:
    """Put a song in the songs bucket as the gateway would; returns its hash."""
    song_hash = hashlib.sha256(b64(mp3).encode()).hexdigest()
    put_song(storage, song_hash, mp3)
    return song_hash


def versions(storage, song_hash: str, under: str = "stems") -> dict[str, int]:
    """How many times each stem of the song was written losslessly (`under="mp3-320"`: each
    of its mp3 tracks), the output bucket being versioned."""
    counts: dict[str, int] = {}
    for obj in storage.client.list_objects(storage.output_bucket,
                                           prefix=f"{song_hash}/{MODEL}/{under}/",
                                           recursive=True, include_version=True):
        stem = tracks.parse_track(obj.object_name.rsplit("/", 1)[1]).stem
        counts[stem] = counts.get(stem, 0) + 1
    return counts


@pytest.fixture
def versioned_output(storage, live_stack):
    """Keep every version of every stem, so a test can tell who wrote what."""
    storage.client.set_bucket_versioning(storage.output_bucket, VersioningConfig(ENABLED))
    yield storage
    live_stack.stop()  # no worker may write while the versions are removed
    for obj in storage.client.list_objects(storage.output_bucket, recursive=True,
                                           include_version=True):
        storage.client.remove_object(storage.output_bucket, obj.object_name, obj.version_id)


def test_a_worker_killed_right_after_claiming_loses_nothing(live_stack, redis_client, jobs,
                                                            storage, make_mp3):
    with CallbackReceiver() as receiver:
        base_url, song_hash, victim, survivor = one_of_two_claims(
            live_stack, redis_client, make_mp3(10, seed=11), {"url": receiver.url,
                                                              "data": {"n": 1}})
        victim.kill()

        final = wait_for_status(base_url, song_hash)
        assert final["status"] == "done", (final, survivor.log())
        assert mp3_stems(storage, song_hash) == STEMS
        assert jobs.get(song_hash).worker == survivor.id
        wait_for(lambda: status(base_url, song_hash)["callback"], 30, "callback not recorded")
        assert status(base_url, song_hash)["callback"].startswith("delivered")
        assert receiver.count == 1 and receiver.bodies() == [{"n": 1}]
    assert redis_client.llen(keys.QUEUE) == 0


def test_a_worker_killed_between_stems_leaves_no_mixed_set(live_stack, redis_client, jobs,
                                                           versioned_output, s3_server,
                                                           make_mp3):
    storage = versioned_output
    # Every reply of the store reaches this worker a second late: time to act between stems.
    proxy = TcpProxy(s3_server, delay_s=1.0)
    live_stack.start_render()  # straight to the store: the proxy goes with the first worker
    try:
        first = LiveWorker(live_stack, MINIO_HOST=proxy.address)
        base_url = live_stack.start_rest()
        first.wait_ready()
        song_hash = submit(base_url, make_mp3(3, seed=12))
        wait_for(lambda: lossless_stems(storage, song_hash), 90, "no stem was ever stored",
                 interval=0.02)
        stop_process(first.process, signal.SIGSTOP)
        partial = lossless_stems(storage, song_hash)
        assert 1 <= len(partial) < 4
        assert status(base_url, song_hash)["status"] == "processing"
        first.kill()
    finally:
        proxy.close()

    second = LiveWorker(live_stack).wait_ready()
    deadline = time.monotonic() + 90
    seen = status(base_url, song_hash)["status"]
    while seen not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = status(base_url, song_hash)["status"]
        if seen == "done":  # stems first, status last: never done with a stem missing
            assert mp3_stems(storage, song_hash) == STEMS
    assert seen == "done", second.log()
    job = jobs.get(song_hash)
    assert (job.worker, job.attempts, job.deaths) == (second.id, 2, 1)
    # The retry rewrote every stem, those of the killed attempt included: one consistent set.
    assert versions(storage, song_hash) == {stem: 2 if stem in partial else 1 for stem in STEMS}
    assert versions(storage, song_hash, "mp3-320") == dict.fromkeys(STEMS, 1)


def test_a_song_that_kills_every_worker_fails_as_worker_lost(live_stack, jobs, storage,
                                                             make_mp3):
    # Long enough that every attempt is caught while it runs, however fast the machine.
    workers = {w.id: w for w in [LiveWorker(live_stack, MAX_DEATHS="3"),
                                 LiveWorker(live_stack, MAX_DEATHS="3")]}
    base_url = live_stack.start_rest()
    for worker in workers.values():
        worker.wait_ready()
    with CallbackReceiver() as receiver:
        poison = submit(base_url, make_mp3(20, seed=13), {"url": receiver.url, "data": "p"})
        for attempt in (1, 2, 3):
            job = wait_for_job(jobs, poison, lambda j, n=attempt: j.status == "processing"
                               and j.attempts == n, what=f"attempt {attempt} never started")
            workers[job.worker].kill()
            workers[job.worker] = workers[job.worker].restart()
        final = wait_for_status(base_url, poison)
        assert final["status"] == "failed"
        assert final["error"].startswith("worker_lost")
        assert (jobs.get(poison).attempts, jobs.get(poison).deaths) == (3, 3)
        wait_for(lambda: receiver.count, 30, "no callback for the failed song")
        assert receiver.requests[0]["headers"]["X-Delivery-Id"] == f"{poison}.3.failed"

        healthy = submit(base_url, make_mp3(3, seed=14))
        assert wait_for_status(base_url, healthy)["status"] == "done"
        assert receiver.count == 1
    assert jobs.get(poison).status == "failed"  # not picked up again


def test_a_frozen_worker_that_wakes_up_cannot_overwrite_its_successor(
        live_stack, redis_client, jobs, versioned_output, make_mp3):
    storage = versioned_output
    with CallbackReceiver() as receiver:
        base_url, song_hash, frozen, other = one_of_two_claims(
            live_stack, redis_client, make_mp3(10, seed=15), {"url": receiver.url})
        stop_process(frozen.process, signal.SIGSTOP)  # past its heartbeat TTL, as a long GC
        try:
            assert wait_for_status(base_url, song_hash)["status"] == "done", other.log()
            assert jobs.get(song_hash).worker == other.id
            wait_for(lambda: receiver.count, 30, "no callback")
        finally:
            stop_process(frozen.process, signal.SIGCONT)
        try:
            wait_for(lambda: "result dropped" in frozen.log(), 90,
                     "the woken worker never gave up its stale attempt", interval=0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}; its log:\n{frozen.log()[-3000:]}") from None
        final = status(base_url, song_hash)
        assert final["status"] == "done" and final["attempts"] == 2
        assert jobs.get(song_hash).worker == other.id
        assert receiver.count == 1
        # Stems and tracks untouched by the woken worker: each written once.
        assert versions(storage, song_hash) == dict.fromkeys(STEMS, 1)
        assert versions(storage, song_hash, "mp3-320") == dict.fromkeys(STEMS, 1)


def test_sigterm_lets_the_current_song_finish_and_exits_0(live_stack, redis_client, jobs,
                                                          s3_server, make_mp3):
    # A slow store (every reply a second late) makes the song outlast the
    # detection bound, HEARTBEAT_TTL_S + REAPER_INTERVAL_S = 4 s, however fast the CPU is.
    proxy = TcpProxy(s3_server, delay_s=1.0)
    try:
        base_url, song_hash, leaving, _ = one_of_two_claims(
            live_stack, redis_client, make_mp3(3, seed=16), MINIO_HOST=proxy.address)
        leaving.process.send_signal(signal.SIGTERM)
        assert leaving.process.wait(120) == 0, leaving.log()
        final = wait_for_status(base_url, song_hash)
        assert final["status"] == "done"
        job = jobs.get(song_hash)
        # Finished by the worker told to stop, and never taken from it by the other worker's
        # reaper although it outlasted the bound: no visibility timeout, only the heartbeat.
        assert (job.worker, job.attempts, job.deaths) == (leaving.id, 1, 0)
        record = redis_client.hgetall(keys.job(song_hash))
        assert float(record["finished"]) - float(record["started"]) > 3 + 1, record
        assert redis_client.llen(keys.processing(leaving.id)) == 0
    finally:
        live_stack.stop()
        proxy.close()


@pytest.mark.parametrize(("grace", "signals"), [("0", 1), ("600", 2)])
def test_sigterm_past_the_grace_period_or_a_second_one_hands_the_song_back(
        live_stack, redis_client, jobs, make_mp3, grace, signals):
    base_url, song_hash, leaving, staying = one_of_two_claims(
        live_stack, redis_client, make_mp3(8, seed=17), SHUTDOWN_GRACE_S=grace)
    wait_for_job(jobs, song_hash, lambda j: j.status == "processing")
    for _ in range(signals):  # a second signal stops at once, whatever the grace period
        leaving.process.send_signal(signal.SIGTERM)
        wait_for(lambda: "finishing the current job" in leaving.log(), 30, "signal unheard")
    assert leaving.process.wait(60) == 0, leaving.log()
    final = wait_for_status(base_url, song_hash)
    assert final["status"] == "done", staying.log()
    job = jobs.get(song_hash)
    assert (job.worker, job.attempts, job.deaths) == (staying.id, 2, 0)


def test_a_missing_input_fails_once_without_a_retry_loop(live_stack, redis_client, jobs,
                                                         storage, make_mp3):
    base_url = live_stack.start_rest()
    song_hash = submit(base_url, make_mp3(2, seed=18))
    storage.remove_song(song_hash)
    worker = LiveWorker(live_stack).wait_ready()
    final = wait_for_status(base_url, song_hash)
    assert final["status"] == "failed" and final["error"].startswith("input_missing")
    reaper_passes(redis_client, 3)
    job = jobs.get(song_hash)
    assert (job.status, job.attempts, job.deaths) == ("failed", 1, 0)
    assert redis_client.llen(keys.QUEUE) == 0
    assert redis_client.llen(keys.processing(worker.id)) == 0


def test_a_claim_whose_reply_was_lost_is_recovered_by_its_live_worker(live_stack, redis_client,
                                                                      jobs, storage, make_mp3):
    worker = LiveWorker(live_stack).wait_ready()
    busy, song_hash = (store_song(storage, make_mp3(seconds, seed=seed))
                       for seconds, seed in ((8, 20), (2, 19)))
    jobs.enqueue(busy, None, 1000)
    wait_for_job(jobs, busy, lambda j: j.status == "processing")
    stop_process(worker.process)
    try:
        # Frozen inside that song, so its claim loop waits on no queue: the claim below is
        # what a BLMOVE leaves behind when its reply is lost (redis-py retries a command on a
        # broken connection), the hash in the list of a live worker that never learnt of it.
        assert jobs.get(busy).status == "processing"
        jobs.enqueue(song_hash, None, 1000)
        assert jobs.claim(worker.id, timeout=1) == song_hash
    finally:
        stop_process(worker.process, signal.SIGCONT)
    for job_id in (busy, song_hash):
        job = wait_for_job(jobs, job_id, lambda j: j.status in ("done", "failed"), timeout=60)
        assert job.status == "done", worker.log()
    assert (job.attempts, job.deaths) == (1, 0)


def test_a_song_deleted_while_its_stems_are_stored_leaves_nothing(live_stack, redis_client,
                                                                  jobs, storage, s3_server,
                                                                  make_mp3):
    # Every reply of the store a second late: the delete lands between two stems.
    proxy = TcpProxy(s3_server, delay_s=1.0)
    try:
        worker = LiveWorker(live_stack, MINIO_HOST=proxy.address)
        base_url = live_stack.start_rest()
        worker.wait_ready()
        song_hash = submit(base_url, make_mp3(3, seed=20))
        wait_for(lambda: lossless_stems(storage, song_hash), 90, "no stem was ever stored",
                 interval=0.02)
        response = requests.delete(f"{base_url}/apiv1/song/{song_hash}", timeout=30)
        assert response.status_code == 200, response.text
        # The worker stores its last stems after the delete, then learns the job is gone.
        wait_for(lambda: "separated, missing" in worker.log(), 90,
                 "the worker never learnt that the song was deleted", interval=0.2)
        wait_for(lambda: not storage.names_under(f"{song_hash}/"), 60,
                 "the stems stored after the delete stayed")
    finally:
        proxy.close()
    assert not list(storage.client.list_objects(storage.songs_bucket, prefix=song_hash))
    # Only the deletion counter stays, on purpose (it outlives the song a day).
    assert [key for key in redis_client.keys("*") if song_hash in key] == [
        keys.deletions(song_hash)]
    assert jobs.queued(keys.RENDER_QUEUE) == [] and jobs.in_flight() == []
    assert requests.get(f"{base_url}/apiv1/status/{song_hash}", timeout=30).status_code == 404
