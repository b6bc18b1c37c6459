"""Every route of the gateway and its errors, through Flask's test client, on real servers."""

from __future__ import annotations

import hashlib

import pytest

from common import keys
from common.jobs import JobStatus
from common.storage import rendition_object
from tests import songflow
from tests.helpers import b64, get_song

STEMS = ["drums", "bass", "other", "vocals"]


@pytest.fixture
def client(make_client):
    return make_client()


def assert_nothing_stored(redis_client, storage):
    assert redis_client.llen(keys.QUEUE) == 0
    assert not redis_client.keys("job:*")
    assert not list(storage.client.list_objects(storage.songs_bucket, recursive=True))
    assert not list(storage.client.list_objects(storage.output_bucket, recursive=True))


# -- POST /apiv1/separate ------------------------------------------------------------------
def test_submit_stores_then_queues_and_answers_the_hash(client, redis_client, storage, short_mp3):
    text = b64(short_mp3)
    response = client.post("/apiv1/separate", json={"mp3": text, "extra": "ignored"})
    assert response.status_code == 200
    assert response.json == {"hash": hashlib.sha256(text.encode()).hexdigest(),
                             "reason": "Song enqueued for separation"}
    song_hash = response.json["hash"]
    assert get_song(storage, song_hash) == short_mp3
    assert redis_client.lrange(keys.QUEUE, 0, -1) == [song_hash]
    assert client.get(f"/apiv1/status/{song_hash}").json["status"] == "queued"


def test_hash_ignores_the_line_breaks_of_wrapped_base64(client, short_mp3):
    text = b64(short_mp3)
    wrapped = "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76)) + "\n"
    first = client.post("/apiv1/separate", json={"mp3": text}).json
    second = client.post("/apiv1/separate", json={"mp3": wrapped}).json
    assert first["hash"] == second["hash"]
    assert second["reason"] == "Song already queued"


def test_resubmissions_say_where_the_song_is(client, jobs, storage, redis_client, short_mp3):
    body = {"mp3": b64(short_mp3)}
    song_hash = client.post("/apiv1/separate", json=body).json["hash"]
    songflow.separate(jobs, storage, song_hash)
    again = client.post("/apiv1/separate", json=body).json
    assert again["reason"] == "Song already being separated"
    songflow.render_next(jobs, storage)
    assert client.post("/apiv1/separate", json=body).json["reason"] == "Song already separated"
    assert redis_client.llen(keys.QUEUE) == 0


def test_a_failed_song_is_retried_on_resubmission(client, jobs, redis_client, short_mp3):
    body = {"mp3": b64(short_mp3)}
    song_hash = client.post("/apiv1/separate", json=body).json["hash"]
    jobs.claim("w1", timeout=1)
    token = jobs.start(song_hash, "w1")
    jobs.finish(song_hash, "w1", token, JobStatus.FAILED, error="decode_failed: test")
    response = client.post("/apiv1/separate", json=body)
    assert response.status_code == 200
    assert "again" in response.json["reason"]
    assert redis_client.lrange(keys.QUEUE, 0, -1) == [song_hash]
    assert client.get(f"/apiv1/status/{song_hash}").json["error"] is None


def test_stems_lost_from_the_store_are_separated_again(client, jobs, storage, short_mp3):
    body = {"mp3": b64(short_mp3)}
    song_hash = client.post("/apiv1/separate", json=body).json["hash"]
    songflow.separate_and_render(jobs, storage, song_hash)
    storage.remove_output([rendition_object(song_hash, "demucs_unittest", "mp3-320", "drums.mp3")])
    assert "again" in client.post("/apiv1/separate", json=body).json["reason"]


def test_callback_is_kept_on_the_job(client, jobs, short_mp3):
    callback = {"url": "https://hook.invalid/hook", "data": {"mine": [1, 2]}}
    song_hash = client.post("/apiv1/separate", json={"mp3": b64(short_mp3),
                                                     "callback": callback}).json["hash"]
    assert jobs.get(song_hash).callback == callback


@pytest.mark.parametrize("body, content_type, status, words", [
    ("not json", "application/json", 400, "not valid JSON"),
    ("[1, 2]", "application/json", 400, "JSON object"),
    ("null", "application/json", 400, "JSON object"),
    ('{"song": "x"}', "application/json", 400, "missing field mp3"),
    ('{"mp3": 12}', "application/json", 400, "string"),
    ('{"mp3": ""}', "application/json", 400, "empty"),
    ('{"mp3": "abc$"}', "application/json", 400, "base64 alphabet"),
    ('{"mp3": "abcde"}', "application/json", 400, "padding"),
    ('{"mp3": "' + b64(b"\x89PNG\r\n\x1a\n" + bytes(64)) + '"}', "application/json", 400,
     "not an MP3"),
    ('{"mp3": "SUQz", "callback": "http://x"}', "application/json", 400, "callback must be"),
    ('{"mp3": "x"}', "text/plain", 415, "application/json"),
])
def test_bad_submissions_are_refused_with_a_reason(client, redis_client, storage, body,
                                                   content_type, status, words):
    response = client.post("/apiv1/separate", data=body, content_type=content_type)
    assert response.status_code == status
    assert words in response.json["error"]
    assert_nothing_stored(redis_client, storage)


def test_an_oversized_song_is_refused_before_parsing(make_client, redis_client, storage):
    client = make_client(MAX_UPLOAD_MB="1")
    response = client.post("/apiv1/separate", data=b'{"mp3": "' + b"A" * (2 * 1024 * 1024) + b'"}',
                           content_type="application/json")
    assert response.status_code == 413
    assert "1 MB" in response.json["error"]
    assert_nothing_stored(redis_client, storage)


def test_a_store_outage_answers_503_and_queues_nothing(make_client, redis_client, short_mp3):
    from scripts.local.stack import free_port

    client = make_client(MINIO_HOST=f"127.0.0.1:{free_port()}")
    response = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "object store" in response.json["error"]
    assert redis_client.llen(keys.QUEUE) == 0 and not redis_client.keys("job:*")


def test_a_redis_outage_answers_503_and_stores_nothing(make_client, storage, short_mp3):
    from scripts.local.stack import free_port

    client = make_client(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    response = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)})
    assert response.status_code == 503
    assert "Redis" in response.json["error"]
    assert not list(storage.client.list_objects(storage.songs_bucket))
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


# -- GET /apiv1/queue ----------------------------------------------------------------------
def test_queue_lists_oldest_first_and_accepts_a_null_json_body(client, make_mp3):
    hashes = [client.post("/apiv1/separate", json={"mp3": b64(make_mp3(1, seed=n))}).json["hash"]
              for n in range(3)]
    response = client.get("/apiv1/queue", data="null", content_type="application/json")
    assert response.status_code == 200
    assert response.json == {"queue": hashes, "length": 3, "in_flight": 0}
    assert client.get("/apiv1/queue").json["queue"] == hashes  # reading does not consume


# -- tracks, status, remove ----------------------------------------------------------------
@pytest.fixture
def separated(client, jobs, storage, short_mp3) -> str:
    song_hash = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)}).json["hash"]
    songflow.separate_and_render(jobs, storage, song_hash)
    return song_hash


@pytest.mark.parametrize("track, stem", [("bass.mp3", "bass"), ("base.mp3", "bass"),
                                         ("base", "bass"), ("drums", "drums"),
                                         ("vocals.mp3", "vocals"), ("other.mp3", "other")])
def test_tracks_stream_as_mpeg_with_a_file_name(client, storage, separated, track, stem):
    response = client.get(f"/apiv1/track/{separated}/{track}")
    assert response.status_code == 200
    assert response.mimetype == "audio/mpeg"
    assert response.data == storage.client.get_object(storage.output_bucket, rendition_object(
        separated, "demucs_unittest", "mp3-320", f"{stem}.mp3")).read()
    assert f"{stem}.mp3" in response.headers["Content-Disposition"]


def test_status_of_a_separated_song(client, separated):
    status = client.get(f"/apiv1/status/{separated}").json
    assert status["status"] == "done" and status["progress"] == 1.0
    assert status["tracks"] == ["drums.mp3", "bass.mp3", "other.mp3", "vocals.mp3"]
    assert status["error"] is None


def test_track_of_a_song_not_yet_separated_says_its_status(client, short_mp3):
    song_hash = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)}).json["hash"]
    response = client.get(f"/apiv1/track/{song_hash}/drums.mp3")
    assert response.status_code == 404
    assert response.json["status"] == "queued"


@pytest.mark.parametrize("path, status", [
    ("/apiv1/track/" + "0" * 64 + "/bass.mp3", 404),
    ("/apiv1/status/" + "0" * 64, 404),
    ("/apiv1/track/" + "0" * 63 + "/bass.mp3", 400),
    ("/apiv1/track/" + "0" * 65 + "/bass.mp3", 400),
    ("/apiv1/track/" + "G" * 64 + "/bass.mp3", 400),
    ("/apiv1/track/" + "0" * 64 + "/..", 400),
    ("/apiv1/track/" + "0" * 64 + "/%2e%2e%2f", 404),
    ("/apiv1/track/" + "0" * 64 + "/bass%00.mp3", 400),
    ("/apiv1/status/..%2f..%2fetc", 404),
    ("/apiv1/nothing", 404),
])
def test_bad_or_unknown_paths_answer_json(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert response.json["error"]


def test_unknown_track_of_a_separated_song(client, separated):
    response = client.get(f"/apiv1/track/{separated}/guitar.mp3")
    assert response.status_code == 404
    assert response.json["tracks"] == ["drums.mp3", "bass.mp3", "other.mp3", "vocals.mp3"]


@pytest.mark.parametrize("method", ["get", "delete"])
def test_remove_deletes_one_stem(client, storage, separated, method):
    response = getattr(client, method)(f"/apiv1/remove/{separated}/base.mp3")
    assert response.status_code == 200
    assert response.json["track"] == "bass.mp3"
    stored = storage.names_under(f"{separated}/demucs_unittest/mp3-320/")
    assert sorted(stored) == ["drums.mp3", "other.mp3", "vocals.mp3"]
    assert client.get(f"/apiv1/track/{separated}/bass.mp3").status_code == 404
    assert getattr(client, method)(f"/apiv1/remove/{separated}/bass.mp3").status_code == 404
    assert client.get(f"/apiv1/status/{separated}").json["tracks"] == [
        "drums.mp3", "other.mp3", "vocals.mp3"]


def test_wrong_method_is_405_json(client):
    response = client.put("/apiv1/queue")
    assert response.status_code == 405
    assert response.json["error"]
    assert "GET" in response.headers["Allow"]


# -- probes and the API description -------------------------------------------------------
def test_health_and_readiness(client):
    assert client.get("/healthz").json == {"status": "alive"}
    assert client.get("/readyz").json == {"status": "ready"}


def test_openapi_describes_exactly_the_routes(client):
    document = client.get("/apiv1/openapi.json").json
    assert document["openapi"].startswith("3.")
    described = {(path, method.upper()) for path, item in document["paths"].items()
                 for method in item}
    app = client.application
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("page."):
            continue  # the page and its files are not part of the API
        path = rule.rule.replace("<", "{").replace(">", "}")
        served |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert described == served


def test_openapi_lists_the_statuses_each_route_really_answers(client, separated):
    paths = client.get("/apiv1/openapi.json").json["paths"]
    observed = {
        ("/apiv1/status/{songhash}", "get", "404"): client.get("/apiv1/status/" + "1" * 64),
        ("/apiv1/status/{songhash}", "get", "400"): client.get("/apiv1/status/xyz"),
        ("/apiv1/track/{songhash}/{track}", "get", "200"):
            client.get(f"/apiv1/track/{separated}/drums"),
        ("/apiv1/separate", "post", "415"): client.post("/apiv1/separate", data="x"),
        ("/apiv1/remove/{songhash}/{track}", "delete", "200"):
            client.delete(f"/apiv1/remove/{separated}/drums"),
    }
    for (path, method, code), response in observed.items():
        assert str(response.status_code) == code
        assert code in paths[path][method]["responses"]


def test_readiness_creates_the_buckets_of_a_fresh_store(make_client, storage):
    """No one-shot setup job: the gateway makes the buckets it and the workers need."""
    client = make_client(SONGS_BUCKET="fresh-songs", OUTPUT_BUCKET="fresh-output")
    try:
        assert client.get("/readyz").json == {"status": "ready"}
        assert storage.client.bucket_exists("fresh-songs")
        assert storage.client.bucket_exists("fresh-output")
    finally:
        for bucket in ("fresh-songs", "fresh-output"):
            if storage.client.bucket_exists(bucket):
                storage.client.remove_bucket(bucket)
