"""The studio operations (waveform peaks, analysis, seek index) every song's stems get: queued
in the Redis script that ends the separation's claim or an ensemble's stems job, once, within
the render limits, on a real Redis server."""

from __future__ import annotations

import pytest

from common import ensemble_jobs, ensembles, keys, operations
from common.jobs import JobStatus, JobStore, Kind, RenditionRefused, RenditionResult, render_id
from tests.test_job_flow import H1, H2, MP3, render, separate, studio


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, "htdemucs")


def test_the_hand_off_queues_the_studio_operations_once(store):
    """Waveforms and analysis are made for every separated song, whether or not anybody reads
    its status: queued in the step that ends the separation's claim, behind its rendition."""
    job_id, token = separate(store, "gpu", model="htdemucs_6s")
    mp3 = render_id(H1, "htdemucs_6s", MP3)
    assert store.hand_off(job_id, "gpu", token, H1, mp3, {}) == "rendering"
    assert store.queued(keys.RENDER_QUEUE) == [mp3, *studio(model="htdemucs_6s")]
    for op, render_job in zip(operations.STUDIO, studio(model="htdemucs_6s"), strict=True):
        job = store.get(render_job)
        assert (job.kind, job.status, job.rendition, job.model, job.parent) == (
            Kind.RENDER, JobStatus.QUEUED, op, "htdemucs_6s", job_id)
        # The status read still asks for them: it finds them.
        assert store.request_rendition(H1, "htdemucs_6s", op) is RenditionResult.QUEUED
    # The hand-off sent again (its reply lost) finds its attempt over and queues nothing.
    assert store.hand_off(job_id, "gpu", token, H1, mp3, {}) == "stale"
    assert store.queued(keys.RENDER_QUEUE) == [mp3, *studio(model="htdemucs_6s")]


def test_a_worker_killed_around_its_hand_off_queues_the_studio_operations_once(store):
    job_id, first = separate(store, "gpu")
    # Killed while it separates: the reaper requeues the song, a second worker separates it.
    assert store.requeue_orphan(job_id, "gpu", max_deaths=3) == "requeued"
    assert store.claim("gpu2", 1) == job_id
    second = store.start(job_id, "gpu2")
    mp3 = render_id(H1, "htdemucs", MP3)
    assert store.hand_off(job_id, "gpu2", second, H1, mp3, {}) == "rendering"
    # The first worker wakes and hands off too; the second dies after its hand-off.
    assert store.hand_off(job_id, "gpu", first, H1, mp3, {}) == "stale"
    assert store.requeue_orphan(job_id, "gpu2", max_deaths=3) == "gone"
    assert store.queued(keys.RENDER_QUEUE) == [mp3, *studio()]
    while store.queued(keys.RENDER_QUEUE):
        render(store, "cpu")
    assert all(store.get(render_job).status is JobStatus.DONE for render_job in studio())
    assert store.get(job_id).status is JobStatus.DONE


def test_studio_operations_wait_for_room_in_the_render_queue(redis_client):
    """The rendition a song's submitter waits for is queued whatever the render queue holds;
    its studio operations only while it is shorter than MAX_QUEUE_LENGTH, the rest being
    asked for by the song's status read."""
    store = JobStore(redis_client, "htdemucs", max_render_queue=2)
    job_id, token = separate(store, "gpu")
    assert store.hand_off(job_id, "gpu", token, H1, render_id(H1, "htdemucs", MP3), {}
                          ) == "rendering"
    first, *refused = studio()
    assert store.queued(keys.RENDER_QUEUE) == [render_id(H1, "htdemucs", MP3), first]
    assert all(store.get(render_job) is None for render_job in refused)
    # Full already: the song's rendition is queued beyond it, nothing else.
    job_id, token = separate(store, "gpu", song=H2)
    assert store.hand_off(job_id, "gpu", token, H2, render_id(H2, "htdemucs", MP3), {}
                          ) == "rendering"
    assert store.queued(keys.RENDER_QUEUE)[2:] == [render_id(H2, "htdemucs", MP3)]
    while store.queued(keys.RENDER_QUEUE):
        render(store, "cpu")
    assert store.get(H1).status is JobStatus.DONE and store.get(H2).status is JobStatus.DONE
    # The status read's fallback, as room is made.
    for song, ops in ((H1, operations.STUDIO[1:]), (H2, operations.STUDIO)):
        for op in ops:
            assert store.request_rendition(song, "", op) is RenditionResult.ENQUEUED
            assert render(store, "cpu") == render_id(song, "htdemucs", op)


def test_a_done_ensemble_stems_job_queues_the_studio_operations_of_its_stems(store,
                                                                             redis_client):
    made, failed = (ensembles.Spec(algorithm, ["htdemucs", "htdemucs_ft"])
                    for algorithm in ("avg", "max_spec"))
    for spec in (made, failed):
        ensemble_jobs.create(redis_client, H1, spec, ["drums", "bass"], "htdemucs")
    assert ensemble_jobs.release(redis_client, H1, "htdemucs") == 2  # no member to wait for
    ends = {made.name: JobStatus.DONE, failed.name: JobStatus.FAILED}
    for _ in ends:
        stems_job = store.claim("cpu", 1, keys.RENDER_QUEUE)
        model = store.get(stems_job).model
        status, separation = ends[model], f"{H1}:{model}"
        token = store.start(stems_job, "cpu")
        assert ensemble_jobs.arm(redis_client, separation, stems_job)
        assert store.finish(stems_job, "cpu", token, status, "" if status is JobStatus.DONE
                            else "member_failed: x", ["drums.flac"], parent=separation)
        assert store.get(separation).status is status
    # Only the stems made get them, queued in the step that ended their job.
    assert store.queued(keys.RENDER_QUEUE) == studio(model=made.name)
    assert {store.get(job).parent for job in studio(model=made.name)} == {f"{H1}:{made.name}"}


def test_studio_operations_count_against_no_limit_of_renditions(redis_client):
    """Made for every model's stems, they would otherwise crowd out the renditions a client
    asks for (MAX_RENDITIONS_PER_SONG counts render jobs of every model)."""
    store = JobStore(redis_client, "htdemucs", max_render_queue=5, max_renditions=1)
    job_id, token = separate(store, "gpu")
    mp3 = render_id(H1, "htdemucs", MP3)
    assert store.hand_off(job_id, "gpu", token, H1, mp3, {}) == "rendering"
    assert store.queued(keys.RENDER_QUEUE) == [mp3, *studio()]
    with pytest.raises(RenditionRefused) as refused:
        store.request_rendition(H1, "", "wav-16")
    assert refused.value.result is RenditionResult.TOO_MANY
    # A song whose hand-off found no room: its status read gets them, at its most renditions.
    job_id, token = separate(store, "gpu", song=H2)
    assert store.hand_off(job_id, "gpu", token, H2, render_id(H2, "htdemucs", MP3), {}
                          ) == "rendering"
    assert store.get(studio(H2)[0]) is None
    while store.queued(keys.RENDER_QUEUE):
        render(store, "cpu")
    for op in operations.STUDIO:
        assert store.request_rendition(H2, "", op) is RenditionResult.ENQUEUED
