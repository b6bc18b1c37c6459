"""The claim loop (worker/runtime/loop.py): the one mapping from what a worker's `work` raised
to how its job ends; failures that must not hide: a bug inside one job fails that job at once
with its traceback in the shipped log, and the loop goes on; a bug while sending a callback is
logged and recorded; a hung loop or a dead reaper stops the heartbeat. A real ClaimLoop on the
real Redis and S3 servers; only its `work` and `discard` are the test's own."""

from __future__ import annotations

import logging
import threading

import pytest

from common import keys
from common.jobs import JobStatus
from common.logship import setup_logging
from common.storage import StorageError
from tests.helpers import wait_for
from worker.runtime.errors import Cancelled, DecodeFailed, HandBack, Superseded
from worker.runtime.heartbeat import is_alive
from worker.runtime.loop import ClaimLoop

BUGGY, FINE, HANGING, SELF_ENDED = "b" * 64, "f" * 64, "h" * 64, "e" * 64
# Songs whose first attempt raises this; a second attempt (after a hand back) is fine.
RAISES: dict[str, Exception] = {
    "1" * 64: Cancelled("cancel asked"),
    "2" * 64: Superseded("not current"),
    "3" * 64: DecodeFailed("not audio"),
    "4" * 64: HandBack("a dependency is down"),
    "5" * 64: StorageError("the store is down"),
    "6" * 64: RuntimeError("a bug"),
}


class TestLoop(ClaimLoop):
    """Separation jobs whose work is a bug, fine, a hang, ends the claim itself, or raises what
    RAISES names, by song; it records which attempts it was asked to discard."""

    __test__ = False
    release = threading.Event()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.raises = dict(RAISES)
        self.discarded: list[tuple[str, list[str]]] = []

    def work(self, attempt):
        song = attempt.job.song
        attempt.stored.append(f"{song}/vocals.mp3")
        if song == BUGGY:
            return {}["no such key"]  # a bug, not a failure of the song
        if song == HANGING:
            self.release.wait(30)
        if song == SELF_ENDED:
            self.finish(attempt, JobStatus.DONE, tracks=["own.mp3"])
            return None
        if song in self.raises:
            raise self.raises.pop(song)
        return ["vocals.mp3"]

    def discard(self, attempt):
        self.discarded.append((attempt.id, attempt.stored))


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
        JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED) and job, 30,
        f"{song_hash} never ended")


def test_what_work_raises_decides_how_its_job_ends(running, jobs):
    loop = running()
    songs = [*RAISES, FINE, SELF_ENDED]
    for song_hash in songs:
        jobs.enqueue(song_hash, None, 10)
    ended = {song_hash: final(jobs, song_hash) for song_hash in songs}
    outcomes = {song_hash: (job.status, job.error, job.attempts, job.tracks)
                for song_hash, job in ended.items()}
    cancelled, superseded, failed, handed_back, store_down, bug = RAISES
    assert outcomes == {
        cancelled: (JobStatus.CANCELLED, "", 1, []),
        superseded: (JobStatus.FAILED, "superseded", 1, []),
        failed: (JobStatus.FAILED, "decode_failed: not audio", 1, []),
        # Back at the head of its queue, no death counted: the next attempt is done.
        handed_back: (JobStatus.DONE, "", 2, ["vocals.mp3"]),
        store_down: (JobStatus.DONE, "", 2, ["vocals.mp3"]),
        bug: (JobStatus.FAILED, "internal_error: RuntimeError", 1, []),
        FINE: (JobStatus.DONE, "", 1, ["vocals.mp3"]),
        SELF_ENDED: (JobStatus.DONE, "", 1, ["own.mp3"]),
    }
    assert all(job.deaths == 0 for job in ended.values())
    # What an attempt stored goes when it ended other than done, and stays when it was
    # handed back (the next attempt writes the same objects).
    assert sorted(loop.discarded) == sorted(
        (song_hash, [f"{song_hash}/vocals.mp3"]) for song_hash in (cancelled, superseded,
                                                                   failed, bug))


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
