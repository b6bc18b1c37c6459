"""Renditions on demand, zips, status, models, cancel and delete, through the gateway's routes,
with the songs taken through their jobs on the real Redis and S3 servers (tests/songflow.py)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import soundfile

from common import keys
from common.jobs import JobStatus
from common.storage import rendition_object
from tests import songflow
from tests.audio_files import audio_file
from tests.helpers import b64

MODEL = "demucs_unittest"
SIX = "htdemucs_6s"


@pytest.fixture
def client(make_client):
    return make_client(DEMUCS_MODELS=f"{MODEL},{SIX}", DEFAULT_MODEL=MODEL)


def submit(client, seconds: float = 2, **options) -> str:
    response = client.post("/apiv1/separate",
                           json={"mp3": b64(audio_file("wav", seconds)), **options})
    assert response.status_code == 200, response.json
    return response.json["hash"]


@pytest.fixture
def song(client, jobs, storage) -> str:
    song_hash = submit(client)
    songflow.separate_and_render(jobs, storage, song_hash)
    return song_hash


def decoded(data: bytes) -> tuple[np.ndarray, int]:
    return soundfile.read(io.BytesIO(data), always_2d=True)


def test_models_lists_the_served_models_with_their_stems(client, jobs):
    # The fields of the original answer (the catalogue's are tested in test_models_catalogue).
    assert [{k: m[k] for k in ("name", "stems", "default")}
            for m in client.get("/apiv1/models").json["models"]] == [
        {"name": MODEL, "stems": ["drums", "bass", "other", "vocals"], "default": True},
        {"name": SIX, "stems": ["drums", "bass", "other", "vocals", "guitar", "piano"],
         "default": False}]
    jobs.register_model(MODEL, ["vocals", "accompaniment"])
    assert client.get("/apiv1/models").json["models"][0]["stems"] == ["vocals", "accompaniment"]


def test_another_rendition_is_made_on_request_then_served(client, jobs, storage, song):
    first = client.get(f"/apiv1/track/{song}/vocals.flac?bits=24")
    assert first.status_code == 202, first.json
    assert first.headers["Retry-After"] == "2"
    assert first.json == {"hash": song, "model": MODEL, "rendition": "flac-24",
                          "status": "enqueued", "reason": first.json["reason"]}
    assert client.get(f"/apiv1/track/{song}/drums.flac?bits=24").status_code == 202
    songflow.render_next(jobs, storage)
    response = client.get(f"/apiv1/track/{song}/vocals.flac?bits=24")
    assert response.status_code == 200 and response.mimetype == "audio/flac"
    wav, rate = decoded(response.data)
    assert rate == 44100 and abs(len(wav) / rate - 1.0) < 0.01
    assert soundfile.info(io.BytesIO(response.data)).subtype == "PCM_24"


def _fail_next_render(jobs, error: str) -> None:
    job_id = jobs.claim("cpu", 1, keys.RENDER_QUEUE)
    token = jobs.start(job_id, "cpu")
    assert jobs.finish(job_id, "cpu", token, JobStatus.FAILED, error,
                       parent=jobs.get(job_id).parent)


def test_a_failed_rendition_is_reported_not_waited_for(client, jobs, song):
    assert client.get(f"/apiv1/track/{song}/vocals.wav").status_code == 202
    _fail_next_render(jobs, "encode_failed: the encoder refused the stem")
    response = client.get(f"/apiv1/track/{song}/vocals.wav")
    assert response.status_code == 500
    assert response.json["reason"] == "encode_failed: the encoder refused the stem"
    assert "another format" in response.json["error"]
    assert jobs.queue_length(keys.RENDER_QUEUE) == 0  # not queued again to fail again


def test_a_rendition_whose_workers_died_is_tried_again(client, jobs, song):
    assert client.get(f"/apiv1/track/{song}/vocals.wav").status_code == 202
    _fail_next_render(jobs, "worker_lost: a worker died 3 times")
    assert client.get(f"/apiv1/track/{song}/vocals.wav").status_code == 202
    assert jobs.queue_length(keys.RENDER_QUEUE) == 1


def test_two_stem_tracks_and_their_mime_types(client, jobs, storage, song):
    assert client.get(f"/apiv1/track/{song}/no_vocals.wav").status_code == 202
    songflow.render_next(jobs, storage)
    response = client.get(f"/apiv1/track/{song}/no_vocals.wav")
    assert response.status_code == 200 and response.mimetype == "audio/wav"
    assert client.get(f"/apiv1/track/{song}/vocals.wav").status_code == 202  # another rendition
    status = client.get(f"/apiv1/status/{song}").json
    ready = {(t["track"], t["format"], t["rendition"]) for t in status["ready"]}
    assert ("no_vocals.wav", "wav", "wav-16+vocals") in ready
    assert ("bass.mp3", "mp3", "mp3-320") in ready


@pytest.mark.parametrize("path, status, words", [
    ("guitar.mp3", 404, "drums.mp3, bass.mp3"), ("no_guitar.mp3", 400, "no stem"),
    ("bass.flac?bits=8", 400, "16, 24"), ("bass.mp3?bitrate=12", 400, "320"),
    ("bass.mp3?model=nosuch", 400, "offers"),
])
def test_bad_track_requests_name_the_choices(client, song, path, status, words):
    response = client.get(f"/apiv1/track/{song}/{path}")
    assert response.status_code == status and words in response.json["error"]


def test_the_zip_holds_every_track_of_the_rendition(client, jobs, storage, song):
    response = client.get(f"/apiv1/zip/{song}")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.namelist() == ["drums.mp3", "bass.mp3", "other.mp3", "vocals.mp3"]
    stored = storage.client.get_object(storage.output_bucket, rendition_object(
        song, MODEL, "mp3-320", "bass.mp3")).read()
    assert archive.read("bass.mp3") == stored
    two = client.get(f"/apiv1/zip/{song}?format=flac&two_stems=drums")
    assert two.status_code == 202
    songflow.render_next(jobs, storage)
    archive = zipfile.ZipFile(io.BytesIO(client.get(
        f"/apiv1/zip/{song}?format=flac&two_stems=drums").data))
    assert archive.namelist() == ["drums.flac", "no_drums.flac"]
    drums, _ = decoded(archive.read("drums.flac"))
    rest, _ = decoded(archive.read("no_drums.flac"))
    assert drums.shape == rest.shape and rest.any()


def test_status_shows_the_options_asked_for(client, jobs, storage):
    song_hash = submit(client, format="wav", bits=24, two_stems="vocals")
    status = client.get(f"/apiv1/status/{song_hash}").json
    assert status["status"] == "queued"
    assert status["options"] == {"model": MODEL, "format": "wav", "bits": 24,
                                 "two_stems": "vocals"}
    assert status["ready"] == []
    songflow.separate_and_render(jobs, storage, song_hash)
    status = client.get(f"/apiv1/status/{song_hash}").json
    assert status["status"] == "done" and status["tracks"] == ["vocals.wav", "no_vocals.wav"]


def test_another_model_is_addressed_with_its_query_parameter(client, jobs, storage, redis_client):
    song_hash = submit(client, model=SIX)
    assert redis_client.lrange(f"{keys.QUEUE}:{SIX}", 0, -1) == [f"{song_hash}:{SIX}"]
    assert client.get(f"/apiv1/status/{song_hash}").status_code == 404
    assert client.get(f"/apiv1/status/{song_hash}?model={SIX}").json["status"] == "queued"
    songflow.separate_and_render(jobs, storage, song_hash, SIX, songflow.tracks.SIX_STEMS)
    response = client.get(f"/apiv1/track/{song_hash}/guitar.mp3?model={SIX}")
    assert response.status_code == 200 and response.mimetype == "audio/mpeg"
    assert client.get(f"/apiv1/track/{song_hash}/guitar.mp3").status_code == 404


def test_each_model_has_its_queue_and_a_queued_song_its_place_in_it(client, jobs):
    first, second, third = (submit(client, seconds=1 + n / 10, model=model)
                            for n, model in enumerate((MODEL, SIX, SIX)))
    assert client.get("/apiv1/queue").json["queue"] == [first]
    assert client.get(f"/apiv1/queue?model={MODEL}").json["queue"] == [first]
    assert client.get(f"/apiv1/queue?model={SIX}").json == {"queue": [second, third],
                                                             "length": 2, "in_flight": 0}
    unknown = client.get("/apiv1/queue?model=htdemucs_9s")
    assert unknown.status_code == 400 and unknown.json["models"] == [MODEL, SIX]
    assert f"{MODEL}, {SIX}" in unknown.json["error"]

    def place(song_hash: str, model: str) -> tuple:
        status = client.get(f"/apiv1/status/{song_hash}?model={model}").json
        return status["status"], status.get("position"), status.get("queue_length")

    assert place(first, MODEL) == ("queued", 1, 1)
    assert place(second, SIX) == ("queued", 1, 2)
    assert place(third, SIX) == ("queued", 2, 2)
    jobs.claim("gpu", 1, jobs.queue_for(SIX))  # a worker takes the next song of that model
    assert place(second, SIX) == ("queued", None, None)  # claimed, not yet started
    jobs.start(f"{second}:{SIX}", "gpu")
    assert place(second, SIX) == ("processing", None, None)
    assert place(third, SIX) == ("queued", 1, 1)
    assert client.get(f"/apiv1/queue?model={SIX}").json == {"queue": [third], "length": 1,
                                                             "in_flight": 1}


def test_cancel_a_queued_song_then_submit_it_again(client, redis_client):
    song_hash = submit(client)
    response = client.post(f"/apiv1/cancel/{song_hash}")
    assert response.status_code == 200 and response.json["status"] == "cancelled"
    assert redis_client.llen(keys.QUEUE) == 0
    assert client.get(f"/apiv1/status/{song_hash}").json["status"] == "cancelled"
    assert submit(client) == song_hash
    assert redis_client.lrange(keys.QUEUE, 0, -1) == [song_hash]


def test_cancel_a_running_song_and_a_finished_one(client, jobs, song):
    assert client.post(f"/apiv1/cancel/{song}").status_code == 409
    other = submit(client, seconds=3)
    jobs.claim("gpu", 1, jobs.queue_for(MODEL))
    jobs.start(other, "gpu")
    response = client.post(f"/apiv1/cancel/{other}")
    assert response.status_code == 200 and response.json["status"] == "stopping"
    assert client.post(f"/apiv1/cancel/{'0' * 64}").status_code == 404


def test_delete_leaves_nothing_of_the_song(client, jobs, storage, redis_client, song):
    assert client.get(f"/apiv1/track/{song}/vocals.wav").status_code == 202
    response = client.delete(f"/apiv1/song/{song}")
    assert response.status_code == 200 and response.json["reason"] == "Song deleted"
    assert client.get(f"/apiv1/status/{song}").status_code == 404
    assert client.get(f"/apiv1/track/{song}/bass.mp3").status_code == 404
    for bucket in (storage.songs_bucket, storage.output_bucket):
        assert not list(storage.client.list_objects(bucket, recursive=True))
    lists = [key for key in redis_client.keys("*")
             if redis_client.type(key) == "list" and key != keys.LOGGING]
    # Only the deletion counter stays (a day), so that a submission racing the delete knows.
    assert [key for key in redis_client.keys("*") if song in key] == [keys.deletions(song)]
    assert not [key for key in lists if any(song in i for i in redis_client.lrange(key, 0, -1))]
    assert client.delete(f"/apiv1/song/{song}").status_code == 404


def test_writes_need_a_read_write_key(make_client, song):
    client = make_client(API_KEYS="rw-key,ro-key:ro")
    for method, path in (("POST", f"/apiv1/cancel/{song}"), ("DELETE", f"/apiv1/song/{song}")):
        assert client.open(path, method=method).status_code == 401
        assert client.open(path, method=method,
                           headers={"Authorization": "Bearer ro-key"}).status_code == 403


def test_openapi_lists_the_statuses_the_new_routes_answer(client, jobs, storage, song):
    paths = client.get("/apiv1/openapi.json").json["paths"]
    queued = submit(client, seconds=3)
    observed = [
        ("/apiv1/models", "get", client.get("/apiv1/models")),
        ("/apiv1/queue", "get", client.get("/apiv1/queue?model=htdemucs_9s")),
        ("/apiv1/track/{songhash}/{track}", "get", client.get(f"/apiv1/track/{song}/bass.wav")),
        ("/apiv1/zip/{songhash}", "get", client.get(f"/apiv1/zip/{song}")),
        ("/apiv1/zip/{songhash}", "get", client.get(f"/apiv1/zip/{song}?format=flac")),
        ("/apiv1/zip/{songhash}", "get", client.get(f"/apiv1/zip/{song}?format=aiff")),
        ("/apiv1/cancel/{songhash}", "post", client.post(f"/apiv1/cancel/{song}")),
        ("/apiv1/cancel/{songhash}", "post", client.post(f"/apiv1/cancel/{queued}")),
        ("/apiv1/song/{songhash}", "delete", client.delete(f"/apiv1/song/{song}")),
        ("/apiv1/song/{songhash}", "delete", client.delete(f"/apiv1/song/{song}")),
    ]
    codes = [(path, response.status_code) for path, _, response in observed]
    assert [code for _, code in codes] == [200, 400, 202, 200, 202, 400, 409, 200, 200, 404]
    for path, method, response in observed:
        assert str(response.status_code) in paths[path][method]["responses"], (path, response)
