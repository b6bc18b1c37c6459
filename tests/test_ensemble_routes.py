"""POST /apiv1/ensemble/<hash> and an ensemble's way through its jobs, in this process: the
gateway's routes, a render worker on a thread, members' stems stored as a separation worker
stores them, on the real Redis and S3 servers."""

from __future__ import annotations

import io
import threading
import zipfile

import numpy as np
import pytest
import soundfile

from common import keys, tracks
from common.jobs import JobStatus, render_id
from common.redisconn import connect
from scripts.local.make_samples import synthesize
from tests import uvr_reference
from tests.audio_files import audio_file
from tests.helpers import b64, wait_for
from tests.stems import write_lossless
from tests.test_ensemble_dsp import snr_db

pytestmark = pytest.mark.timeout(240)
MODEL, OTHER, SIX = "demucs_unittest", "htdemucs", "htdemucs_6s"
STEMS = list(tracks.FOUR_STEMS)


@pytest.fixture
def client(make_client):
    return make_client(DEMUCS_MODELS=f"{MODEL},{OTHER},{SIX}", DEFAULT_MODEL=MODEL)


@pytest.fixture
def song(client) -> str:
    response = client.post("/apiv1/separate", json={"mp3": b64(audio_file("wav", 2))})
    assert response.status_code == 200, response.json
    return response.json["hash"]


@pytest.fixture
def render_worker(make_settings, redis_client, storage):
    """A render worker on a thread of this process, stopped after the test."""
    from worker.render.main import RenderWorker

    settings = make_settings(RENDER_PROCESSES="1", WORKER_ID="test-render")
    worker = RenderWorker(settings, connect(settings))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    yield worker
    worker.stop()
    thread.join(60)
    worker.close()


def store_member(jobs, storage, song: str, model: str, seed: int) -> dict[str, np.ndarray]:
    """Separate the song's queued job of `model` as its worker would: lossless stems stored
    (synthetic, different per model), the claim handed off; the stems as stored."""
    job_id = jobs.claim("sep", 1, jobs.queue_for(model))
    assert job_id == jobs.separation_id(song, model)
    token = jobs.start(job_id, "sep")
    stored = {}
    for n, stem in enumerate(STEMS):
        wav = (synthesize(2.0, 44100, seed=seed + n) * 0.2).astype("f4")
        data = write_lossless(wav, 44100)
        storage.put_lossless(song, model, stem, data)
        stored[stem] = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)[0].T
    job = jobs.get(job_id)
    render = render_id(song, model, job.rendition or "mp3-320")
    assert jobs.hand_off(job_id, "sep", token, song, render, {}) == "rendering"
    return stored


def state(redis_client) -> dict:
    """Every key but the rate limiter's, with its type and size."""
    return {key: (redis_client.type(key), redis_client.memory_usage(key))
            for key in redis_client.keys("*") if not key.startswith("rate")}


def post(client, song: str, **spec):
    return client.post(f"/apiv1/ensemble/{song}", json=spec)


@pytest.mark.parametrize(("spec", "words"), [
    ({"members": [MODEL, "nope"]}, f"unknown member nope; this service offers {MODEL}, "),
    ({"members": [MODEL, SIX]}, "avg needs members with the same stems"),
    ({"algorithm": "max_spec", "members": [MODEL]}, "max_spec combines two or more members"),
    ({"algorithm": "median", "members": [MODEL, OTHER]}, "unknown algorithm 'median'"),
    ({"algorithm": "pick", "picks": {"guitar": MODEL}}, f"member {MODEL} makes no guitar stem"),
    ({"members": [MODEL, OTHER], "picks": {"vocals": SIX}}, "picks name models that are not "
                                                             f"members: {SIX}"),
    ({"members": "xxx, yyy"}, "unknown member xxx, yyy"),  # a comma-separated string too
])
def test_a_bad_ensemble_is_a_400_naming_the_fault(client, song, redis_client, spec,
                                                  words) -> None:
    before = state(redis_client)
    response = post(client, song, **spec)
    assert response.status_code == 400
    assert words in response.json["error"], response.json
    assert state(redis_client) == before  # nothing written


def test_a_member_no_worker_has_registered_is_a_503_to_retry(make_client) -> None:
    client = make_client(DEMUCS_MODELS=f"{MODEL},my_own", DEFAULT_MODEL=MODEL)
    song_hash = client.post("/apiv1/separate", json={"mp3": b64(audio_file("wav", 2))}
                            ).json["hash"]
    response = post(client, song_hash, members=[MODEL, "my_own"])
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.json["error"] == ("the stems of my_own are not known yet: no worker of it "
                                      "has started; retry once GET /apiv1/models shows it ready")


def test_unknown_song_and_non_json_bodies(client) -> None:
    missing = post(client, "a" * 64, members=[MODEL, OTHER])
    assert missing.status_code == 404
    assert missing.json["error"] == (f"no song with hash {'a' * 64}; submit it to "
                                     "/apiv1/separate first")
    response = client.post(f"/apiv1/ensemble/{'a' * 64}", data="[1]",
                           content_type="application/json")
    assert response.status_code == 400 and "must be a JSON object" in response.json["error"]
    assert client.get(f"/apiv1/status/{'a' * 64}?model=ensemble-0123456789abcdef"
                      ).status_code == 400  # never asked for: not a model


def test_max_spec_ensemble_waits_for_its_members_then_is_a_model(client, song, jobs, storage,
                                                                 redis_client,
                                                                 render_worker) -> None:
    first = store_member(jobs, storage, song, MODEL, seed=10)
    response = post(client, song, algorithm="max_spec", members=[MODEL, OTHER])
    assert response.status_code == 202, response.json
    answer = response.json
    name = answer["model"]
    assert name.startswith("ensemble-") and len(name) == len("ensemble-") + 16
    assert answer["members"] == {MODEL: "processing", OTHER: "queued"}
    assert answer["stems"] == STEMS and answer["status"] == "enqueued"
    stems_job = render_id(song, name, "stems")
    status = client.get(f"/apiv1/status/{song}?model={name}")
    assert status.status_code == 200 and status.json["status"] == "queued"
    assert stems_job not in redis_client.lrange(keys.RENDER_QUEUE, 0, -1)  # members first

    second = store_member(jobs, storage, song, OTHER, seed=20)
    wait_for(lambda: client.get(f"/apiv1/status/{song}?model={name}").json["status"] == "done",
             120, "the ensemble was never made")
    done = client.get(f"/apiv1/status/{song}?model={name}").json
    assert done["tracks"] == [f"{stem}.flac" for stem in STEMS]
    for stem in STEMS:
        made, rate = soundfile.read(io.BytesIO(storage.get_output(
            f"{song}/{name}/stems/{stem}.flac")), dtype="float64", always_2d=True)
        expected = uvr_reference.uvr_spec([first[stem], second[stem]], loudest=True)
        assert rate == 44100 and snr_db(expected, made.T) > 60, stem

    # An ensemble is then a model like the others: tracks, zips, and the same answer again.
    wait_for(lambda: client.get(f"/apiv1/track/{song}/vocals.mp3?model={name}"
                                ).status_code == 200, 120, "no vocals.mp3 of the ensemble")
    wait_for(lambda: client.get(f"/apiv1/zip/{song}?model={name}&format=flac"
                                ).status_code == 200, 120, "no zip of the ensemble")
    archive = zipfile.ZipFile(io.BytesIO(client.get(
        f"/apiv1/zip/{song}?model={name}&format=flac").data))
    assert sorted(archive.namelist()) == sorted(f"{stem}.flac" for stem in STEMS)
    again = post(client, song, members=[OTHER, MODEL][::-1], algorithm="max_spec")
    assert (again.status_code, again.json["model"], again.json["status"]) == (202, name, "done")


def test_a_failed_member_fails_the_ensemble_with_its_reason(client, song, jobs, storage,
                                                           render_worker) -> None:
    store_member(jobs, storage, song, MODEL, seed=1)
    name = post(client, song, algorithm="pick", picks={"vocals": OTHER, "drums": MODEL}
                ).json["model"]
    job_id = jobs.claim("sep", 1, jobs.queue_for(OTHER))
    token = jobs.start(job_id, "sep")
    assert jobs.finish(job_id, "sep", token, JobStatus.FAILED, "decode_failed: not audio")
    wait_for(lambda: client.get(f"/apiv1/status/{song}?model={name}").json["status"]
             == "failed", 60, "the ensemble never failed")
    assert client.get(f"/apiv1/status/{song}?model={name}").json["error"] == (
        f"member_failed: {OTHER}'s separation is failed (decode_failed: not audio)")


def test_deleting_a_song_leaves_nothing_of_its_waiting_ensemble(client, song, redis_client,
                                                                 storage) -> None:
    name = post(client, song, members=[MODEL, OTHER]).json["model"]
    assert redis_client.smembers(keys.ensemble_waiting(song)) == {render_id(song, name, "stems")}
    assert client.delete(f"/apiv1/song/{song}").status_code == 200
    left = [key for key in redis_client.keys("*") if song in key]
    assert left == [keys.deletions(song)]  # the gateway's deletion counter, kept on purpose
    assert client.get(f"/apiv1/status/{song}?model={name}").status_code == 404


def test_a_song_is_never_submitted_to_an_ensemble(client, song, jobs, storage) -> None:
    store_member(jobs, storage, song, MODEL, seed=2)
    name = post(client, song, algorithm="pick", picks={"vocals": MODEL}).json["model"]
    refused = client.post("/apiv1/separate", json={"mp3": b64(audio_file("wav", 2, seed=4)),
                                                   "model": name})
    assert refused.status_code == 400
    assert refused.json["error"].startswith(f"unknown model {name!r}; this service offers")
