"""A song's job ids and keys follow DEFAULT_MODEL, never the order of DEMUCS_MODELS: the same
song submitted through gateways whose model lists are reordered lands on the same records and
queues, and its results are served by either. Real Redis, real S3, the gateway app."""

from __future__ import annotations

from common import keys, tracks
from common.jobs import JobStore
from tests import songflow
from tests.audio_files import audio_file
from tests.helpers import b64

MODEL, SIX = "demucs_unittest", "htdemucs_6s"


def submit(client, mp3: str, **options) -> dict:
    response = client.post("/apiv1/separate", json={"mp3": mp3, **options})
    assert response.status_code == 200, response.json
    return response.json


def redis_state(redis_client) -> dict[str, object]:
    """Every key (`logging` aside) with what it holds (a sorted set: its kind), to compare."""
    state: dict[str, object] = {}
    for key in sorted(set(redis_client.keys("*")) - {keys.LOGGING}):
        kind = redis_client.type(key)
        state[key] = (redis_client.lrange(key, 0, -1) if kind == "list" else
                      sorted(redis_client.smembers(key)) if kind == "set" else
                      redis_client.hgetall(key) if kind == "hash" else kind)
    return state


def test_reordering_the_models_keeps_every_job_id_key_and_result(make_client, redis_client,
                                                                 storage):
    first = make_client(DEMUCS_MODELS=f"{MODEL},{SIX}", DEFAULT_MODEL=MODEL)
    reordered = make_client(DEMUCS_MODELS=f"{SIX},{MODEL}", DEFAULT_MODEL=MODEL)
    mp3 = b64(audio_file("wav", 2))
    song = submit(first, mp3)["hash"]
    assert submit(first, mp3, model=SIX)["hash"] == song
    before = redis_state(redis_client)
    assert redis_client.lrange(keys.QUEUE, 0, -1) == [song]  # the original wire form
    assert redis_client.lrange(f"{keys.QUEUE}:{SIX}", 0, -1) == [f"{song}:{SIX}"]

    for options in ({}, {"model": SIX}):
        answer = submit(reordered, mp3, **options)
        assert (answer["hash"], answer["reason"]) == (song, "Song already queued")
    assert redis_state(redis_client) == before
    assert first.get("/apiv1/models").json == reordered.get("/apiv1/models").json

    # Each model's job, taken through by workers of the reordered deployment, is done for both.
    jobs = JobStore(redis_client, MODEL)
    songflow.separate_and_render(jobs, storage, song)
    songflow.separate_and_render(jobs, storage, song, SIX, tracks.SIX_STEMS)
    for query in ("", f"?model={SIX}"):
        first.get(f"/apiv1/status/{song}{query}")  # what a first reading queues, if anything
        answers = [client.get(f"/apiv1/status/{song}{query}").json for client in (first,
                                                                                 reordered)]
        assert answers[0] == answers[1] and answers[0]["status"] == "done", answers
