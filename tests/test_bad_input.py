"""Everything a client can get wrong is refused before anything is stored or queued.

The table runs through Flask's test client and create_app(settings); bodies without a
Content-Length and concurrent submissions go to gunicorn, as clients would send them.
"""

from __future__ import annotations

import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from common import keys
from tests import songflow
from tests.helpers import b64

HASH = "ab" * 32


@pytest.fixture
def make_client(make_client):
    """Clients of an app that refuses private callback addresses, as in production."""
    return lambda **overrides: make_client(**{"CALLBACK_ALLOW_PRIVATE": "false", **overrides})


def assert_nothing_stored(redis_client, storage) -> None:
    assert redis_client.llen(keys.QUEUE) == 0
    assert not redis_client.keys("job:*") and not redis_client.keys("processing:*")
    for bucket in (storage.songs_bucket, storage.output_bucket):
        assert not list(storage.client.list_objects(bucket, recursive=True)), bucket


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("song.mp3", b"\xff\xfb" * 500)
    return buffer.getvalue()


PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
# A frame header, then bytes that are no MPEG stream at all.
BROKEN_MP3 = b"\xff\xfb\x90\x64" + bytes(range(256)) * 20


@pytest.mark.parametrize("body, status", [
    pytest.param("not json", 400, id="not-json"),
    pytest.param("{\"mp3\": ", 400, id="truncated-json"),
    pytest.param("[1, 2]", 400, id="json-array"),
    pytest.param("null", 400, id="json-null"),
    pytest.param("\"a string\"", 400, id="json-string"),
    pytest.param("42", 400, id="json-number"),
    pytest.param("{}", 400, id="missing-mp3"),
    pytest.param("{\"song\": \"SUQz\"}", 400, id="misnamed-mp3"),
    pytest.param("{\"mp3\": 12}", 400, id="mp3-number"),
    pytest.param("{\"mp3\": null}", 400, id="mp3-null"),
    pytest.param("{\"mp3\": [\"SUQz\"]}", 400, id="mp3-list"),
    pytest.param("{\"mp3\": {\"data\": \"SUQz\"}}", 400, id="mp3-object"),
    pytest.param("{\"mp3\": \"\"}", 400, id="empty"),
    pytest.param("{\"mp3\": \"   \\n\"}", 400, id="only-whitespace"),
    pytest.param("{\"mp3\": \"abc$defg\"}", 400, id="illegal-character"),
    pytest.param("{\"mp3\": \"ab-_cdef\"}", 400, id="urlsafe-alphabet"),
    pytest.param("{\"mp3\": \"abcd\u00e9fgh\"}", 400, id="non-ascii"),
    pytest.param("{\"mp3\": \"abc\\u0000defg\"}", 400, id="nul-character"),
    pytest.param("{\"mp3\": \"abcde\"}", 400, id="wrong-padding-length"),
    pytest.param("{\"mp3\": \"QQ=\"}", 400, id="short-padding"),
    pytest.param("{\"mp3\": \"QQ==QQ==\"}", 400, id="padding-in-the-middle"),
    pytest.param("{\"mp3\": \"QQ===\"}", 400, id="too-much-padding"),
    pytest.param(json.dumps({"mp3": "data:audio/mpeg;base64," + b64(b"\xff\xfb" * 64)}), 400,
                 id="data-url"),
    pytest.param(json.dumps({"mp3": b64(PNG)}), 400, id="png"),
    pytest.param(json.dumps({"mp3": b64(_zip())}), 400, id="zip"),
    pytest.param(json.dumps({"mp3": b64(bytes(4096))}), 400, id="zeros"),
    pytest.param(json.dumps({"mp3": b64(BROKEN_MP3)}), 400, id="mp3-header-then-garbage"),
    pytest.param(json.dumps({"mp3": b64(b"ID3\x03\x00\x00\x00\x00\x00\x00")}), 400,
                 id="id3-tag-only"),
])
def test_bad_bodies_are_refused_and_leave_nothing(make_client, redis_client, storage, body,
                                                  status):
    response = make_client().post("/apiv1/separate", data=body.encode(),
                                  content_type="application/json")
    assert response.status_code == status, response.json
    assert response.json["error"]
    assert_nothing_stored(redis_client, storage)


@pytest.mark.parametrize("callback", [
    "http://hook.invalid/hook",  # not an object
    {"data": 1},
    {"url": 5},
    {"url": ""},
    {"url": "file:///etc/passwd"},
    {"url": "gopher://hook.invalid:70/_x"},
    {"url": "ftp://hook.invalid/"},
    {"url": "javascript:alert(1)"},
    {"url": "http:///no-host"},
    {"url": "http://127.0.0.1/hook"},
    {"url": "http://127.1/hook"},
    {"url": "http://[::1]/hook"},
    {"url": "http://10.0.0.1/hook"},
    {"url": "http://192.168.1.1/hook"},
    {"url": "http://100.64.0.1/hook"},
    {"url": "http://169.254.169.254/latest/meta-data/"},
    {"url": "http://[fe80::1]/hook"},
    {"url": "http://0.0.0.0/hook"},
    {"url": "http://0x7f000001/hook"},
    {"url": "http://2130706433/hook"},
    {"url": "http://017700000001/hook"},
    {"url": "http://[::ffff:127.0.0.1]/hook"},
    {"url": "http://[::ffff:7f00:1]/hook"},
    {"url": "http://a@127.0.0.1/hook"},
    {"url": "http://a:b@hook.invalid/hook"},
    {"url": "http://hook.invalid:99999/hook"},
    {"url": "http://exa mple.com/hook"},
    {"url": "https://hook.invalid/" + "a" * 2048},
], ids=str)
def test_unsafe_callbacks_are_refused_and_leave_nothing(make_client, redis_client, storage,
                                                        short_mp3, callback):
    response = make_client().post("/apiv1/separate",
                                  json={"mp3": b64(short_mp3), "callback": callback})
    assert response.status_code == 400, response.json
    assert "callback" in response.json["error"]
    assert_nothing_stored(redis_client, storage)


def test_a_public_callback_is_accepted(make_client, jobs, short_mp3):
    callback = {"url": "https://hook.invalid/hook?x=1", "data": {"id": 7}}
    response = make_client().post("/apiv1/separate", json={"mp3": b64(short_mp3),
                                                           "callback": callback})
    assert response.status_code == 200
    assert jobs.get(response.json["hash"]).callback == callback


def test_a_non_json_content_type_is_refused(make_client, redis_client, storage, short_mp3):
    response = make_client().post("/apiv1/separate", data=b64(short_mp3),
                                  content_type="text/plain")
    assert response.status_code == 415
    assert_nothing_stored(redis_client, storage)


def test_an_oversized_body_is_refused_before_parsing(make_client, redis_client, storage):
    body = b'{"mp3": "' + b"A" * (2 * 1024 * 1024) + b'"}'
    response = make_client(MAX_UPLOAD_MB="1").post("/apiv1/separate", data=body,
                                                   content_type="application/json")
    assert response.status_code == 413
    assert_nothing_stored(redis_client, storage)


def test_a_tiny_mp3_that_plays_too_long_is_refused(make_client, redis_client, storage, make_mp3):
    # 60 s at 8 kbps, 8 kHz mono: some 60 KB, well under any size limit.
    long_and_small = make_mp3(60, seed=3, samplerate=8000, channels=1, bitrate=8)
    assert len(long_and_small) < 100_000
    response = make_client(MAX_DURATION_S="30").post("/apiv1/separate",
                                                     json={"mp3": b64(long_and_small)})
    assert response.status_code == 422 and "the limit is 30 s" in response.json["error"]
    assert_nothing_stored(redis_client, storage)
    short_and_small = make_mp3(20, seed=3, samplerate=8000, channels=1, bitrate=8)
    assert make_client(MAX_DURATION_S="30").post(
        "/apiv1/separate", json={"mp3": b64(short_and_small)}).status_code == 200


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/apiv1/status/..", 400),
    ("GET", "/apiv1/status/%2e%2e", 400),
    ("GET", "/apiv1/status/%2e%2e%2f", 404),
    ("GET", "/apiv1/status/..%2f..%2fetc%2fpasswd", 404),
    ("GET", "/apiv1/status/%00", 400),
    ("GET", f"/apiv1/status/{HASH}%00", 400),
    ("GET", f"/apiv1/status/{HASH[:-1]}", 400),
    ("GET", f"/apiv1/status/{HASH}0", 400),
    ("GET", f"/apiv1/status/{HASH.upper()}", 400),
    ("GET", f"/apiv1/status/{'g' * 64}", 400),
    ("GET", f"/apiv1/track/{HASH}/..", 400),
    ("GET", f"/apiv1/track/{HASH}/%2e%2e%2f", 404),
    ("GET", f"/apiv1/track/{HASH}/%2e%2e%2fsongs", 404),
    ("GET", f"/apiv1/track/{HASH}/bass%00.mp3", 400),
    ("GET", f"/apiv1/track/{HASH}/bass.mp3.exe", 400),
    ("GET", f"/apiv1/track/{HASH}/BASS.MP3", 400),
    ("GET", f"/apiv1/track/{HASH}/{'a' * 40}", 400),
    ("GET", f"/apiv1/track/{HASH}/piano.mp3", 404),
    ("GET", f"/apiv1/track/{HASH[:10]}/bass.mp3", 400),
    ("DELETE", f"/apiv1/remove/{HASH}/..", 400),
    ("DELETE", f"/apiv1/remove/..%2f{HASH}/bass.mp3", 404),
    ("DELETE", f"/apiv1/remove/{HASH}/bass%00", 400),
    ("DELETE", f"/apiv1/remove/{HASH}/piano.mp3", 404),
])
def test_bad_path_parameters_are_refused_before_storage(make_client, redis_client, storage,
                                                        method, path, status):
    response = make_client().open(path, method=method)
    assert response.status_code == status, response.json
    assert response.json["error"]
    assert_nothing_stored(redis_client, storage)


def test_unknown_tracks_of_a_separated_song_touch_nothing(make_client, jobs, storage,
                                                          redis_client, short_mp3):
    client = make_client()
    song_hash = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)}).json["hash"]
    songflow.separate_and_render(jobs, storage, song_hash)
    stored = sorted(storage.names_under(f"{song_hash}/"))
    for track in ("piano.mp3", "guitar", "mix.mp3", "piano.flac"):
        assert client.get(f"/apiv1/track/{song_hash}/{track}").status_code == 404
        assert client.delete(f"/apiv1/remove/{song_hash}/{track}").status_code == 404
    assert sorted(storage.names_under(f"{song_hash}/")) == stored
    assert jobs.get(song_hash).complete and redis_client.llen(keys.RENDER_QUEUE) == 0


# -- against gunicorn ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_gunicorn_refuses_oversized_bodies_with_or_without_content_length(
        live_stack, redis_client, storage, make_mp3):
    base_url = live_stack.start_rest(MAX_UPLOAD_MB="1")

    def chunks():
        yield b'{"mp3": "'
        for _ in range(64):  # 4 MB of base64, more than 1 MB of mp3 can take
            yield b"QUFB" * 16384
        yield b'"}'

    headers = {"Content-Type": "application/json"}
    chunked = requests.post(f"{base_url}/apiv1/separate", data=chunks(), headers=headers,
                            timeout=60)
    assert chunked.status_code == 413, chunked.text
    sized = requests.post(f"{base_url}/apiv1/separate", data=b"".join(chunks()), headers=headers,
                          timeout=60)
    assert sized.status_code == 413
    assert_nothing_stored(redis_client, storage)
    # A chunked body within the limit is read as usual.
    small = json.dumps({"mp3": b64(make_mp3(1, seed=4))}).encode()
    accepted = requests.post(f"{base_url}/apiv1/separate", headers=headers, timeout=60,
                             data=(small[i:i + 1000] for i in range(0, len(small), 1000)))
    assert accepted.status_code == 200, accepted.text


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ten_identical_concurrent_submissions_make_one_job(live_stack, redis_client, storage,
                                                           short_mp3):
    base_url = live_stack.start_rest()
    body = {"mp3": b64(short_mp3)}
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: requests.post(f"{base_url}/apiv1/separate", json=body,
                                                        timeout=60), range(10)))
    assert [r.status_code for r in answers] == [200] * 10
    hashes = {r.json()["hash"] for r in answers}
    assert len(hashes) == 1
    reasons = [r.json()["reason"] for r in answers]
    assert reasons.count("Song enqueued for separation") == 1, reasons
    assert redis_client.lrange(keys.QUEUE, 0, -1) == list(hashes)
    assert redis_client.keys("job:*") == [keys.job(h) for h in hashes]
    assert len(list(storage.client.list_objects(storage.songs_bucket))) == 1
