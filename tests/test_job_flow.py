"""Separation and render jobs together, per-model queues, cancel, delete and expiry, on a
real Redis server: every key the song had is gone after a delete."""

from __future__ import annotations

import threading

import pytest

from common import keys, operations
from common.jobs import (
    CancelResult,
    EnqueueResult,
    JobStatus,
    JobStore,
    Kind,
    RenditionResult,
    render_id,
)

H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64
MP3 = "mp3-320"
TRACKS = ["drums.mp3", "bass.mp3", "other.mp3", "vocals.mp3"]


def studio(song: str = H1, model: str = "htdemucs") -> list[str]:
    """The render jobs of the studio operations made for every song's stems."""
    return [render_id(song, model, op) for op in operations.STUDIO]


@pytest.fixture
def store(redis_client) -> JobStore:
    """A store whose default model is `htdemucs`, the other models having queues of their own."""
    return JobStore(redis_client, "htdemucs")


def separate(store: JobStore, worker: str, song: str = H1, model: str = "htdemucs",
             rendition: str = MP3) -> tuple[str, str]:
    """Enqueue a song, claim and start it from its model's queue; returns (job id, token)."""
    store.enqueue(song, {"url": "https://x.invalid/"}, 100, model=model, rendition=rendition)
    job_id = store.claim(worker, 1, store.queue_for(model))
    assert job_id == store.separation_id(song, model)
    return job_id, store.start(job_id, worker)


def render(store: JobStore, worker: str, status: JobStatus = JobStatus.DONE,
           error: str = "") -> str:
    """Claim, start and end the oldest render job; returns its id."""
    job_id = store.claim(worker, 1, keys.RENDER_QUEUE)
    job = store.get(job_id)
    token = store.start(job_id, worker)
    tracks = TRACKS if status is JobStatus.DONE else []
    assert store.finish(job_id, worker, token, status, error, tracks, parent=job.parent)
    return job_id


def test_each_model_has_its_own_queue_first_in_first_out(store, redis_client):
    for song in (H1, H2, H3):
        store.enqueue(song, None, 100, model="htdemucs_6s")
    store.enqueue(H1, None, 100)
    assert store.queued(keys.QUEUE) == [H1]  # the default model keeps the original queue
    assert store.queued("toWorker:htdemucs_6s") == [f"{h}:htdemucs_6s" for h in (H1, H2, H3)]
    assert [store.claim("w", 1, "toWorker:htdemucs_6s") for _ in range(3)] == [
        f"{h}:htdemucs_6s" for h in (H1, H2, H3)]
    job = store.separation(H1, "htdemucs_6s")
    assert (job.kind, job.song, job.model, job.status) == (
        Kind.SEPARATE, H1, "htdemucs_6s", JobStatus.QUEUED)
    assert store.get(H1).model == "htdemucs"


def test_a_separation_is_done_when_its_render_job_is(store, redis_client):
    job_id, token = separate(store, "gpu")
    assert store.get(job_id).started > 0
    assert store.hand_off(job_id, "gpu", token, H1, render_id(H1, "htdemucs", MP3),
                         {"separate": 1.0}) == "rendering"
    job = store.get(job_id)
    assert (job.status, job.awaiting, job.token) == (
        JobStatus.PROCESSING, f"{H1}:htdemucs:{MP3}", "")
    assert store.claimed_by("gpu") == [] and store.in_flight() == []
    assert store.queued(keys.RENDER_QUEUE) == [f"{H1}:htdemucs:{MP3}", *studio()]
    assert store.cancel(H1) is CancelResult.FINISHED  # the model ran: too late to cancel
    render(store, "cpu")
    job = store.get(job_id)
    assert (job.status, job.tracks, job.complete, job.progress) == (
        JobStatus.DONE, TRACKS, True, 1.0)
    assert job.finished >= job.started > 0
    assert store.owed_callbacks("cpu") == [job_id]  # the render worker sends the callback
    assert store.finished_counts() == {"done": 1, "render:done": 1}
    assert store.enqueue(H1, None, 100) is EnqueueResult.ALREADY_DONE


def test_the_render_job_makes_the_rendition_its_id_names(store):
    store.enqueue(H1, None, 100)  # no rendition asked: the worker names the default one
    job_id = store.claim("gpu", 1)
    token = store.start(job_id, "gpu")
    store.hand_off(job_id, "gpu", token, H1, render_id(H1, "htdemucs", "mp3-192"), {})
    render_job = store.get(render_id(H1, "htdemucs", "mp3-192"))
    assert (render_job.song, render_job.model, render_job.rendition, render_job.parent) == (
        H1, "htdemucs", "mp3-192", H1)


def test_a_failed_render_fails_its_separation_with_the_reason(store):
    job_id, token = separate(store, "gpu")
    store.hand_off(job_id, "gpu", token, H1, render_id(H1, "htdemucs", MP3), {})
    render(store, "cpu", JobStatus.FAILED, "encode_failed: no")
    job = store.get(job_id)
    assert (job.status, job.error) == (JobStatus.FAILED, "encode_failed: no")
    assert store.enqueue(H1, None, 100) is EnqueueResult.RETRIED


def test_a_render_job_that_kills_its_workers_fails_its_separation(store):
    job_id, token = separate(store, "gpu")
    store.hand_off(job_id, "gpu", token, H1, render_id(H1, "htdemucs", MP3), {})
    render_job = store.claim("cpu", 1, keys.RENDER_QUEUE)
    store.start(render_job, "cpu")
    assert store.requeue_orphan(render_job, "cpu", 1) == "failed"
    job = store.get(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error.startswith("worker_lost") and "rendering" in job.error
    assert store.owed_callbacks("cpu") == [job_id]


def test_renditions_are_rendered_once_and_only_from_separated_songs(store):
    assert store.request_rendition(H1, "", "wav-16") is RenditionResult.NOT_SEPARATED
    job_id, token = separate(store, "gpu")
    assert store.request_rendition(H1, "", "wav-16") is RenditionResult.NOT_SEPARATED
    store.hand_off(job_id, "gpu", token, H1, render_id(H1, "htdemucs", MP3), {})
    assert store.request_rendition(H1, "", "wav-16") is RenditionResult.ENQUEUED
    assert store.request_rendition(H1, "", "wav-16") is RenditionResult.QUEUED
    assert store.request_rendition(H1, "htdemucs", MP3) is RenditionResult.QUEUED
    render(store, "cpu")  # mp3 first: the separation is done
    assert store.get(job_id).status is JobStatus.DONE
    while store.queued(keys.RENDER_QUEUE):  # the studio operations, then the wav
        render(store, "cpu")
    assert store.request_rendition(H1, "", "wav-16") is RenditionResult.STORED
    wav = store.get(render_id(H1, "htdemucs", "wav-16"))
    assert (wav.kind, wav.parent, wav.status) == (Kind.RENDER, H1, JobStatus.DONE)


def test_a_rendition_stored_already_ends_a_new_separation_at_once(store):
    job_id, token = separate(store, "gpu")
    store.hand_off(job_id, "gpu", token, H1, render_id(H1, "htdemucs", MP3), {})
    render(store, "cpu")
    store.remove_track(job_id, "bass.mp3")  # incomplete: submitting separates again
    job_id, token = separate(store, "gpu")
    assert store.hand_off(job_id, "gpu", token, H1, render_id(H1, "htdemucs", MP3), {}) == "done"
    # The studio operations the first hand-off queued wait still: none is queued twice.
    assert store.get(job_id).status is JobStatus.DONE
    assert store.queued(keys.RENDER_QUEUE) == studio()


def test_cancel_a_queued_song_and_submit_it_again(store, redis_client):
    store.enqueue(H1, None, 100)
    assert store.cancel(H1) is CancelResult.CANCELLED
    assert store.cancel(H1) is CancelResult.CANCELLED
    assert store.queued() == [] and store.get(H1).status is JobStatus.CANCELLED
    assert store.cancel(H2) is CancelResult.MISSING
    assert store.enqueue(H1, None, 100) is EnqueueResult.RETRIED
    assert store.queued() == [H1] and not store.get(H1).cancel


def test_a_cancel_between_claim_and_start_drops_the_claim(store):
    store.enqueue(H1, None, 100)
    assert store.claim("gpu", 1) == H1
    assert store.cancel(H1) is CancelResult.CANCELLED
    assert store.start(H1, "gpu") is None and store.claimed_by("gpu") == []


def test_a_running_separation_is_told_to_stop_and_ends_cancelled(store):
    job_id, token = separate(store, "gpu")
    assert store.set_progress(job_id, token, 0.2) == "ok"
    assert store.cancel(H1) is CancelResult.STOPPING
    assert store.set_progress(job_id, token, 0.3) == "cancel"
    assert store.finish(job_id, "gpu", token, JobStatus.CANCELLED)
    job = store.get(job_id)
    assert job.status is JobStatus.CANCELLED and store.in_flight() == []
    assert store.owed_callbacks("gpu") == []  # the client asked for it: no callback
    assert store.enqueue(H1, None, 100) is EnqueueResult.RETRIED


def together(**actions) -> dict:
    """Run each action in a thread of its own, released at once; their results by name."""
    results, barrier = {}, threading.Barrier(len(actions))

    def run(name, action):
        barrier.wait()
        results[name] = action()

    threads = [threading.Thread(target=run, args=item) for item in actions.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_cancel_racing_the_end_of_a_separation_has_one_outcome(store):
    for attempt in range(20):
        song = f"{attempt:064x}"
        job_id, token = separate(store, "gpu", song)
        outcomes = together(
            cancel=lambda song=song: store.cancel(song),
            end=lambda job_id=job_id, token=token, song=song: store.hand_off(
                job_id, "gpu", token, song, render_id(song, "htdemucs", MP3), {}))
        job = store.get(job_id)
        if outcomes["end"] == "cancelled":  # the cancel came first: the stems are removed
            assert outcomes["cancel"] is CancelResult.STOPPING
            assert job.status is JobStatus.CANCELLED
            assert render_id(song, "htdemucs", MP3) not in store.queued(keys.RENDER_QUEUE)
        else:
            assert (outcomes["end"], outcomes["cancel"]) == ("rendering", CancelResult.FINISHED)
            assert job.status is JobStatus.PROCESSING and job.awaiting


def all_keys(redis_client) -> set[str]:
    return set(redis_client.keys("*"))


def test_delete_leaves_no_key_of_the_song(store, redis_client):
    store.enqueue(H2, {"url": "https://x.invalid/"}, 100, model="htdemucs_ft")  # it stays
    before = all_keys(redis_client)
    job_id, token = separate(store, "gpu")
    store.hand_off(job_id, "gpu", token, H1, render_id(H1, "htdemucs", MP3), {})
    render(store, "cpu")
    store.request_rendition(H1, "", "wav-24")
    other, other_token = separate(store, "gpu2", model="htdemucs_6s")
    assert len(store.song_jobs(H1)) == 4 + len(operations.STUDIO)
    assert sorted(store.delete_song(H1)) == sorted(
        [H1, f"{H1}:htdemucs:{MP3}", f"{H1}:htdemucs:wav-24", f"{H1}:htdemucs_6s", *studio()])
    store.callback_sent("cpu", job_id, "delivered")  # an owed callback sent after the delete
    assert store.song_jobs(H1) == [] and store.get(H1) is None
    # The running attempt learns it lost its job; its end writes nothing back.
    assert store.set_progress(other, other_token, 0.5) == "stale"
    assert store.hand_off(other, "gpu2", other_token, H1, render_id(H1, "htdemucs_6s", MP3),
                         {}) == "missing"
    # Counts of jobs, not songs, and the song's deletion counter, which outlives it a day.
    assert all_keys(redis_client) - {keys.FINISHED, keys.deletions(H1)} == before
    assert store.queued("toWorker:htdemucs_ft") == [f"{H2}:htdemucs_ft"]


def test_songs_expire_by_the_time_their_newest_job_ended(store):
    job_id, token = separate(store, "gpu")
    store.hand_off(job_id, "gpu", token, H1, render_id(H1, "htdemucs", MP3), {})
    render(store, "cpu")
    ended = store.get(job_id).finished
    store.enqueue(H2, None, 100)
    store.cancel(H2)
    assert store.expired_songs(ended - 1) == []
    assert store.expired_songs(store.get(H2).finished + 1) == [H1, H2]
    store.enqueue(H2, None, 100)  # queued again: not expired while it waits
    assert store.expired_songs(store.get(H2).created + 1) == [H1]
    store.delete_song(H1)
    assert store.expired_songs(ended + 1e9) == []


def test_models_register_their_stems(store):
    store.register_model("htdemucs_6s", ["drums", "bass", "other", "vocals", "guitar", "piano"])
    store.register_model("htdemucs", ["drums", "bass", "other", "vocals"])
    assert store.models()["htdemucs_6s"][-1] == "piano"
    assert set(store.models()) == {"htdemucs", "htdemucs_6s"}
