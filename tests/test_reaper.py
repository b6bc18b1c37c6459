"""The reaper: dead workers' jobs go back to the queue exactly once, live ones are never touched."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis

from common import keys
from common.jobs import JobStatus, JobStore
from tests.helpers import wait_for
from worker.runtime.heartbeat import Heartbeat, beat, is_alive
from worker.runtime.reaper import reap_once, requeue_jobs_of

ORPHANS = 300


def orphans_of(jobs: JobStore, worker: str, count: int) -> list[str]:
    """`count` songs started by `worker`, which then died (registered, no heartbeat)."""
    hashes = [f"{n:064x}" for n in range(count)]
    for song_hash in hashes:
        jobs.enqueue(song_hash, None, count + 1)
    for song_hash in hashes:
        assert jobs.claim(worker, timeout=1) == song_hash
        assert jobs.start(song_hash, worker)
    jobs.redis.sadd(keys.WORKERS, worker)
    return hashes


def all_at_once(action, threads: int = 8) -> list:
    """Run `action` from several threads released together; returns their results."""
    results, barrier = [], threading.Barrier(threads)

    def run():
        barrier.wait()
        results.append(action())

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    return results


def assert_each_requeued_once(jobs: JobStore, hashes: list[str]) -> None:
    queue = Counter(jobs.queued())
    assert queue == Counter(hashes), "some orphan is missing from the queue or there twice"
    for song_hash in hashes:
        job = jobs.get(song_hash)
        assert (job.status, job.deaths, job.token) == (JobStatus.QUEUED, 1, "")


def test_concurrent_reapers_requeue_each_orphan_exactly_once(jobs, settings):
    hashes = orphans_of(jobs, "dead", ORPHANS)

    def reap_until_empty() -> dict:
        # A reaper of its own (client and scripts), passing until the dead worker's list is empty.
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        own, done = JobStore(client, jobs.default_model), {}
        try:
            while own.claimed_by("dead"):
                done.update(reap_once(own, "alive", 3))
        finally:
            client.close()
        return done

    outcomes = all_at_once(reap_until_empty)
    merged = Counter(song_hash for result in outcomes for song_hash in result)
    assert merged == Counter(hashes)  # every orphan reported by exactly one reaper
    assert_each_requeued_once(jobs, hashes)
    assert not jobs.redis.sismember(keys.WORKERS, "dead")
    assert not jobs.redis.exists(keys.REAPER_LOCK)


def test_requeue_is_safe_even_without_the_reaper_lock(jobs):
    hashes = orphans_of(jobs, "dead", ORPHANS)
    outcomes = all_at_once(lambda: requeue_jobs_of(jobs, "dead", 3))
    assert Counter(h for result in outcomes for h in result) == Counter(hashes)
    assert_each_requeued_once(jobs, hashes)


def test_one_reaper_at_a_time_holds_the_lock(jobs):
    orphans_of(jobs, "dead", 1)
    jobs.redis.set(keys.REAPER_LOCK, "someone-else", ex=30)
    assert reap_once(jobs, "alive", 3) == {}
    assert jobs.claimed_by("dead")
    jobs.redis.delete(keys.REAPER_LOCK)
    assert list(reap_once(jobs, "alive", 3).values()) == ["requeued"]


def test_a_reaper_does_not_reap_its_own_worker(jobs):
    orphans_of(jobs, "me", 2)
    assert reap_once(jobs, "me", 3) == {}
    assert len(jobs.claimed_by("me")) == 2


@pytest.mark.timeout(60)
def test_a_long_job_with_a_beating_heartbeat_is_never_taken(jobs, redis_client):
    (song_hash,) = orphans_of(jobs, "busy", 1)
    heart = Heartbeat(redis_client, "busy", ttl_s=1)
    heart.start()
    try:
        # Three TTLs and many reaper passes: the job stays where it is.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert reap_once(jobs, "reaper", 3) == {}
            time.sleep(0.25)
        assert jobs.claimed_by("busy") == [song_hash]
        assert jobs.get(song_hash).status is JobStatus.PROCESSING
    finally:
        heart.stop()  # the worker is gone: its heartbeat key goes with it
    assert reap_once(jobs, "reaper", 3) == {song_hash: "requeued"}
    assert jobs.queued() == [song_hash]


def test_a_heartbeat_expires_by_itself(jobs, redis_client):
    (song_hash,) = orphans_of(jobs, "silent", 1)
    beat(redis_client, "silent", 1)
    assert reap_once(jobs, "reaper", 3) == {}
    wait_for(lambda: not is_alive(redis_client, "silent"), 5, "the heartbeat never expired")
    assert reap_once(jobs, "reaper", 3) == {song_hash: "requeued"}
