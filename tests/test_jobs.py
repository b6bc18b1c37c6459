"""Every transition of a job record, each one atomic, on a real Redis server."""

from __future__ import annotations

import threading

import pytest

from common import keys
from common.jobs import EnqueueResult, JobStatus, JobStore

H1, H2 = "1" * 64, "2" * 64


def started(jobs: JobStore, worker: str, song_hash: str = H1) -> str:
    """Enqueue (if needed), claim and start a job as a worker does; returns the token."""
    jobs.enqueue(song_hash, None, 100)
    assert jobs.claim(worker, timeout=1) == song_hash
    token = jobs.start(song_hash, worker)
    assert token
    return token


def test_enqueue_writes_the_record_and_the_queue_entry_together(jobs, redis_client):
    assert jobs.enqueue(H1, {"url": "https://hook.invalid/"}, 100) is EnqueueResult.ENQUEUED
    assert redis_client.lrange(keys.QUEUE, 0, -1) == [H1]
    job = jobs.get(H1)
    assert (job.status, job.attempts, job.deaths) == (JobStatus.QUEUED, 0, 0)
    assert job.callback == {"url": "https://hook.invalid/"}


def test_a_full_queue_writes_nothing(jobs, redis_client):
    jobs.enqueue(H1, None, 1)
    assert jobs.enqueue(H2, None, 1) is EnqueueResult.QUEUE_FULL
    assert jobs.get(H2) is None and redis_client.lrange(keys.QUEUE, 0, -1) == [H1]


def test_concurrent_enqueues_of_one_song_make_one_entry(jobs, redis_client):
    results, barrier = [], threading.Barrier(10)

    def enqueue():
        barrier.wait()
        results.append(jobs.enqueue(H1, None, 100))

    threads = [threading.Thread(target=enqueue) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted([EnqueueResult.ENQUEUED] + [EnqueueResult.ALREADY_QUEUED] * 9)
    assert redis_client.lrange(keys.QUEUE, 0, -1) == [H1]


def test_a_failed_song_is_enqueued_again_and_a_done_one_is_not(jobs, redis_client):
    token = started(jobs, "w1")
    assert jobs.enqueue(H1, None, 100) is EnqueueResult.ALREADY_PROCESSING
    jobs.finish(H1, "w1", token, JobStatus.FAILED, "decode_failed: x")
    assert jobs.enqueue(H1, None, 100) is EnqueueResult.RETRIED
    job = jobs.get(H1)
    assert (job.status, job.attempts, job.error) == (JobStatus.QUEUED, 0, "")
    token = started(jobs, "w1")
    jobs.finish(H1, "w1", token, JobStatus.DONE, tracks=["bass.mp3"])
    assert jobs.enqueue(H1, None, 100) is EnqueueResult.ALREADY_DONE
    jobs.remove_track(H1, "bass.mp3")  # a removed stem makes the song incomplete
    assert jobs.enqueue(H1, None, 100) is EnqueueResult.RETRIED
    assert redis_client.lrange(keys.QUEUE, 0, -1) == [H1]


def test_a_claim_moves_the_oldest_song_into_the_workers_own_list(jobs, redis_client):
    jobs.enqueue(H1, None, 100)
    jobs.enqueue(H2, None, 100)
    assert jobs.claim("w1", timeout=1) == H1
    assert jobs.claimed_by("w1") == [H1] and jobs.queued() == [H2]
    assert jobs.get(H1).status is JobStatus.QUEUED  # until the worker starts it


def test_only_the_current_attempt_reports_finishes_or_hands_back(jobs, redis_client):
    stale = started(jobs, "w1")
    assert jobs.requeue_orphan(H1, "w1", 3) == "requeued"  # w1 presumed dead
    current = started(jobs, "w2")
    assert jobs.set_progress(H1, stale, 0.5) == "stale"
    assert not jobs.is_current(H1, stale) and jobs.is_current(H1, current)
    assert not jobs.finish(H1, "w1", stale, JobStatus.DONE, tracks=["bass.mp3"])
    assert not jobs.hand_back(H1, "w1", stale)
    job = jobs.get(H1)
    assert (job.status, job.worker, job.progress) == (JobStatus.PROCESSING, "w2", 0)
    assert jobs.queued() == []
    assert jobs.finish(H1, "w2", current, JobStatus.DONE, tracks=["bass.mp3"])
    assert jobs.get(H1).status is JobStatus.DONE and jobs.claimed_by("w2") == []


def test_a_hand_back_goes_to_the_head_and_counts_no_death(jobs, redis_client):
    token = started(jobs, "w1")
    jobs.enqueue(H2, None, 100)
    assert jobs.hand_back(H1, "w1", token)
    assert jobs.queued() == [H1, H2] and jobs.claimed_by("w1") == []
    job = jobs.get(H1)
    assert (job.status, job.deaths, job.token) == (JobStatus.QUEUED, 0, "")


def test_start_refuses_a_song_that_another_attempt_holds(jobs, redis_client):
    current = started(jobs, "w1")
    # A second entry of the same song reaches another worker (a duplicate queue entry).
    redis_client.rpush(keys.QUEUE, H1)
    assert jobs.claim("w2", timeout=1) == H1
    assert jobs.start(H1, "w2") is None
    assert jobs.claimed_by("w2") == []
    job = jobs.get(H1)
    assert (job.worker, job.token, job.attempts) == ("w1", current, 1)


def test_start_repeated_with_its_token_after_a_lost_reply_keeps_the_claim(jobs, redis_client):
    jobs.enqueue(H1, None, 100)
    jobs.claim("w1", timeout=1)
    assert jobs.start(H1, "w1", "token-1") == "token-1"
    assert jobs.start(H1, "w1", "token-1") == "token-1"  # the retry of the same call
    assert jobs.claimed_by("w1") == [H1]  # still where a reaper would find it
    assert jobs.get(H1).attempts == 1
    assert jobs.start(H1, "w1", "token-2") is None  # any other token is another attempt


@pytest.mark.parametrize("max_deaths", [1, 3])
def test_a_song_that_outlives_max_deaths_workers_fails_as_worker_lost(jobs, max_deaths):
    for death in range(1, max_deaths + 1):
        started(jobs, f"w{death}")
        outcome = jobs.requeue_orphan(H1, f"w{death}", max_deaths)
        assert outcome == ("failed" if death == max_deaths else "requeued")
    job = jobs.get(H1)
    assert (job.status, job.deaths, job.attempts) == (JobStatus.FAILED, max_deaths, max_deaths)
    assert job.error.startswith("worker_lost")
    assert jobs.queued() == []


def test_orphans_that_were_never_started_are_requeued_without_a_death(jobs):
    jobs.enqueue(H1, None, 100)
    jobs.claim("w1", timeout=1)
    assert jobs.requeue_orphan(H1, "w1", 1) == "requeued"
    assert jobs.get(H1).deaths == 0 and jobs.queued() == [H1]
    assert jobs.requeue_orphan(H1, "w1", 1) == "gone"  # already taken by someone else
    assert jobs.queued() == [H1]


def test_orphans_of_finished_songs_are_dropped(jobs):
    token = started(jobs, "w1")
    jobs.finish(H1, "w1", token, JobStatus.DONE)
    jobs.redis.rpush(keys.processing("w1"), H1)  # a leftover entry
    assert jobs.requeue_orphan(H1, "w1", 3) == "ignored"
    assert jobs.queued() == [] and jobs.get(H1).status is JobStatus.DONE


def test_the_in_flight_list_holds_one_entry_per_running_attempt(jobs, redis_client):
    """What the autoscaler counts beside the queue: entries come and go with the attempt."""
    token = started(jobs, "w1")
    assert jobs.in_flight() == [H1] and jobs.queued() == []
    jobs.start(H1, "w1", token)  # a retried start adds no second entry
    assert jobs.in_flight() == [H1]
    assert jobs.hand_back(H1, "w1", token)
    assert jobs.in_flight() == [] and jobs.queued() == [H1]
    stale = started(jobs, "w1")
    assert jobs.requeue_orphan(H1, "w1", 3) == "requeued"
    assert jobs.in_flight() == []
    current = started(jobs, "w2")
    assert not jobs.finish(H1, "w1", stale, JobStatus.DONE)  # a stale finish leaves w2's entry
    assert not jobs.hand_back(H1, "w1", stale)
    assert jobs.in_flight() == [H1]
    started(jobs, "w3", H2)
    assert jobs.finish(H1, "w2", current, JobStatus.DONE)
    assert jobs.in_flight() == [H2]
    assert jobs.requeue_orphan(H2, "w3", 1) == "failed"
    assert jobs.in_flight() == [] and redis_client.llen(keys.inflight(keys.QUEUE)) == 0


def test_ended_jobs_are_counted_by_outcome_in_the_step_that_ends_them(jobs):
    token = started(jobs, "w1")
    assert jobs.finish(H1, "w1", token, JobStatus.DONE)
    token = started(jobs, "w1", H2)
    assert not jobs.finish(H2, "w1", "stale-token", JobStatus.FAILED, "decode_failed: x")
    assert jobs.finish(H2, "w1", token, JobStatus.FAILED, "decode_failed: not audio")
    jobs.enqueue(H2, None, 100)
    started(jobs, "w2", H2)
    assert jobs.requeue_orphan(H2, "w2", 1) == "failed"
    assert jobs.finished_counts() == {"done": 1, "failed:decode_failed": 1,
                                      "failed:worker_lost": 1}
