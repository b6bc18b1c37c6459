"""A member that fails, is cancelled or deleted fails every ensemble waiting on it at once,
without a status read: its reason names the member and the member's own reason, its callback
is sent, and nothing is left of it in Redis but its failed record. Real Redis and S3; a live
separation worker (demucs_unittest) for the end-to-end case."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from common import ensemble_jobs, keys
from common.jobs import JobStatus, render_id
from tests.audio_files import audio_file
from tests.helpers import b64, put_song, submit, wait_for
from tests.servers import CallbackReceiver
from tests.test_ensemble_routes import render_worker  # noqa: F401 - a fixture

MODEL, OTHER = "demucs_unittest", "htdemucs"


def leftovers(redis_client, song: str, name: str) -> list[str]:
    """What Redis still holds of an ensemble's waiting state."""
    stems_id = render_id(song, name, "stems")
    found = []
    if redis_client.exists(keys.job(stems_id)):
        found.append("its stems job")
    if redis_client.exists(keys.ensemble_waiting(song)):
        found.append("the song's waiting set")
    if redis_client.sismember(keys.song(song), stems_id):
        found.append("the stems job in the song's jobs")
    if stems_id in redis_client.lrange(keys.RENDER_QUEUE, 0, -1):
        found.append("the stems job in the render queue")
    if redis_client.hexists(keys.job(f"{song}:{name}"), "awaiting"):
        found.append("its awaiting field")
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_member_whose_input_is_broken_fails_the_ensemble_without_a_status_read(
        live_stack, redis_client, storage, make_mp3):
    served = {"DEMUCS_MODELS": f"{MODEL},{OTHER}", "DEFAULT_MODEL": OTHER}
    url = live_stack.start_rest(**served)
    live_stack.start_worker(**served)  # demucs_unittest only: htdemucs's songs stay queued
    wait_for(lambda: any(m["name"] == MODEL and m["ready"] for m in requests.get(
        f"{url}/apiv1/models", timeout=10).json()["models"]), 180, "no worker became ready")
    song = submit(url, make_mp3(2, seed=31))  # queued for htdemucs, which no worker serves
    put_song(storage, song, b"\x00not audio\xff" * 400)  # the upload the members will read
    with CallbackReceiver() as receiver:
        response = requests.post(f"{url}/apiv1/ensemble/{song}", timeout=30, json={
            "algorithm": "avg", "members": [MODEL, OTHER],
            "callback": {"url": receiver.url, "data": {"mine": 7}}})
        assert response.status_code == 202, response.text
        name = response.json()["model"]
        record = wait_for(lambda: (r := redis_client.hgetall(keys.job(f"{song}:{name}")))
                          and r["status"] == "failed" and r, 120,
                          "the ensemble did not fail on its own\n" + live_stack.worker_log())
        member = redis_client.hgetall(keys.job(f"{song}:{MODEL}"))
        assert member["status"] == "failed" and member["error"]
        assert record["error"] == (f"member_failed: {MODEL}'s separation is failed "
                                   f"({member['error']})")
        assert redis_client.hget(keys.job(song), "status") == "queued"  # the other member
        assert leftovers(redis_client, song, name) == []
        wait_for(lambda: receiver.count == 1, 30, "no callback\n" + live_stack.worker_log())
        assert receiver.bodies() == [{"mine": 7}]
        assert receiver.requests[0]["headers"]["X-Delivery-Id"] == f"{song}:{name}.0.failed"
        wait_for(lambda: redis_client.hget(keys.job(f"{song}:{name}"), "callback_status"), 30,
                 "the callback's outcome was not recorded")
    assert redis_client.hget(keys.FINISHED, "failed:member_failed") == "1"


@pytest.fixture
def client(make_client):
    return make_client(DEMUCS_MODELS=f"{MODEL},{OTHER}", DEFAULT_MODEL=MODEL)


def ensembles_of_a_failed_member(client, jobs) -> tuple[str, list[str]]:
    """A song, two ensembles waiting on OTHER, and OTHER's separation failed."""
    song_hash = client.post("/apiv1/separate", json={"mp3": b64(audio_file("wav", 2))}
                            ).json["hash"]
    names = [client.post(f"/apiv1/ensemble/{song_hash}", json=spec).json["model"]
             for spec in ({"members": [MODEL, OTHER],
                           "callback": {"url": "https://hook.invalid/x"}},
                          {"algorithm": "pick", "picks": {"vocals": OTHER, "drums": MODEL}})]
    job_id = jobs.claim("sep", 1, jobs.queue_for(OTHER))
    token = jobs.start(job_id, "sep")
    assert jobs.finish(job_id, "sep", token, JobStatus.FAILED, "decode_failed: not audio")
    return song_hash, names


def test_two_workers_seeing_the_failure_at_once_fail_each_ensemble_once(client, jobs,
                                                                        redis_client):
    song, names = ensembles_of_a_failed_member(client, jobs)
    moved: list[int] = []
    barrier = threading.Barrier(2)

    def worker(outbox: str) -> None:
        barrier.wait()
        moved.append(ensemble_jobs.release(redis_client, song, MODEL, outbox))

    threads = [threading.Thread(target=worker, args=(keys.outbox(w),)) for w in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(moved) in ([0, 2], [1, 1])  # each ensemble failed by exactly one of them
    assert ensemble_jobs.release(redis_client, song, MODEL, keys.outbox("w3")) == 0  # a retry
    owed = redis_client.lrange(keys.outbox("w1"), 0, -1) + redis_client.lrange(
        keys.outbox("w2"), 0, -1)
    assert owed == [f"{song}:{names[0]}"]  # only the first has a callback, owed once
    for name in names:
        record = redis_client.hgetall(keys.job(f"{song}:{name}"))
        assert (record["status"], record["error"]) == (
            "failed", f"member_failed: {OTHER}'s separation is failed (decode_failed: not audio)")
        assert leftovers(redis_client, song, name) == []
        answer = client.get(f"/apiv1/status/{song}?model={name}").json
        assert answer["status"] == "failed" and answer["error"] == record["error"]
    assert json.loads(redis_client.hget(keys.job(f"{song}:{names[0]}"), "callback")) == {
        "url": "https://hook.invalid/x", "data": None}


def test_a_member_asked_for_again_before_the_failure_is_acted_on_keeps_its_ensemble(
        client, jobs, redis_client):
    song, names = ensembles_of_a_failed_member(client, jobs)
    again = client.post(f"/apiv1/ensemble/{song}", json={"members": [MODEL, OTHER]})
    assert again.json["members"][OTHER] == "queued"  # the member is separated again
    assert ensemble_jobs.release(redis_client, song, MODEL, keys.outbox("w1")) == 0
    for name in names:
        assert redis_client.hget(keys.job(f"{song}:{name}"), "status") == "queued"


def test_a_cancelled_member_fails_its_ensemble_without_a_status_read(client, jobs,
                                                                     redis_client,
                                                                     render_worker):  # noqa: F811
    song = client.post("/apiv1/separate", json={"mp3": b64(audio_file("wav", 2))}).json["hash"]
    name = client.post(f"/apiv1/ensemble/{song}", json={"members": [MODEL, OTHER]}
                       ).json["model"]
    assert client.post(f"/apiv1/cancel/{song}?model={OTHER}").json["status"] == "cancelled"
    error = wait_for(lambda: redis_client.hget(keys.job(f"{song}:{name}"), "error"), 60,
                     "the ensemble did not fail")
    assert error == f"member_failed: {OTHER}'s separation is cancelled"
    assert redis_client.hget(keys.job(f"{song}:{name}"), "status") == "failed"
    assert redis_client.hget(keys.job(song), "status") == "queued"  # the other member waits
