"""Failures that must not hide in the claim loop (worker/runtime/loop.py): a bug inside one job
fails that job at once with its traceback in the shipped log, and the loop goes on; a bug while
sending a callback is logged and recorded; a hung loop or a dead reaper stops the heartbeat.
A real ClaimLoop on the real Redis and S3 servers; only its `handle` is the test's own."""

from __future__ import annotations

import logging
import threading

import pytest

from common import keys
from common.jobs import JobStatus
from common.logship import setup_logging
from tests.helpers import wait_for
from worker.runtime.heartbeat import is_alive
from worker.runtime.loop import ClaimLoop

BUGGY, FINE, HANGING = "b" * 64, "f" * 64, "h" * 64


class TestLoop(ClaimLoop):
    """Separation jobs whose handling is a bug, fine, or a hang, by song."""

    __test__ = False
    release = threading.Event()

    def handle(self, attempt):
        if attempt.job.song == BUGGY:
            return {}["no such key"]  # a bug, not a failure of the song
        if attempt.job.song == HANGING:
            self.release.wait(30)
        self.finish(attempt, JobStatus.DONE, tracks=[])


@pytest.fixture
def running(make_settings, redis_client, storage):
    """Factory: a TestLoop running in a thread, with logs shipped to `logging`; stopped after."""
    loops = []

    def start(**env: str) -> TestLoop:
        settings = make_settings(WORKER_ID="loop-1", HEARTBEAT_TTL_S="2", REAPER_INTERVAL_S="1",
                                 **env)
        setup_logging(settings, "worker", redis_client)
        loop = TestLoop(settings, redis_client, keys.QUEUE)
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        loops.append((loop, thread))
        return loop

    yield start
    TestLoop.release.set()
    for loop, thread in loops:
        loop.stop()
        thread.join(30)
    TestLoop.release.clear()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "micro-demucs"]:
        root.removeHandler(handler)


def final(jobs, song_hash: str):
    job_id = jobs.separation_id(song_hash)
    return wait_for(lambda: (job := jobs.get(job_id)) and job.status in (
        JobStatus.DONE, JobStatus.FAILED) and job, 30, f"{song_hash} never ended")


def test_a_bug_in_one_job_fails_that_job_at_once_and_the_loop_goes_on(running, jobs,
                                                                      redis_client):
    running()
    for song_hash in (BUGGY, FINE):
        jobs.enqueue(song_hash, None, 10)
    buggy, fine = final(jobs, BUGGY), final(jobs, FINE)
    assert (buggy.status, buggy.error, buggy.attempts) == (
        JobStatus.FAILED, "internal_error: KeyError", 1)
    assert fine.status is JobStatus.DONE
    shipped = "\n".join(redis_client.lrange(keys.LOGGING, 0, -1))
    assert "Traceback" in shipped and "KeyError: 'no such key'" in shipped


def test_a_bug_while_sending_a_callback_is_recorded_not_lost(running, jobs, redis_client):
    # A record written by an older gateway, whose callback URL is not text.
    jobs.enqueue(FINE, {"url": 12345, "data": None}, 10)
    running()
    job = wait_for(lambda: (j := jobs.get(jobs.separation_id(FINE))) and j.callback_status
                   and j, 30, "the callback outcome was never recorded")
    assert job.callback_status == "failed: internal_error: TypeError"
    assert not jobs.owed_callbacks("loop-1")
    assert "Traceback" in "\n".join(redis_client.lrange(keys.LOGGING, 0, -1))


def test_a_hung_loop_stops_beating(running, jobs, redis_client):
    loop = running()
    loop.stall_s = 2
    wait_for(lambda: is_alive(redis_client, "loop-1"), 10, "never beat")
    jobs.enqueue(HANGING, None, 10)
    wait_for(lambda: not is_alive(redis_client, "loop-1"), 15, "a hung loop still beats")
    assert "no progress" in "\n".join(redis_client.lrange(keys.LOGGING, 0, -1))
    TestLoop.release.set()
    wait_for(lambda: is_alive(redis_client, "loop-1"), 10, "beats again once it goes on")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_reaper_stops_the_heartbeat(running, redis_client):
    def broken_sweep():
        raise RuntimeError("a bug in the sweep")

    loop = running()
    wait_for(lambda: is_alive(redis_client, "loop-1"), 10, "never beat")
    loop.reaper.sweep = broken_sweep  # the next pass raises: the reaper thread dies
    wait_for(lambda: not loop.reaper.is_alive(), 10, "the reaper survived")
    wait_for(lambda: not is_alive(redis_client, "loop-1"), 10, "beats without a reaper")
