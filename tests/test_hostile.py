"""What a hostile or careless client tried against the gateway, each refused or harmless:
hidden audio, tiny files, nested JSON, huge callback data, non-canonical base64, removal by
HEAD or GET, a remove that fails half-way, a lost bucket, private addresses spelled in IPv6,
port 0, and what the answers tell. Flask's test client on real Redis and S3 servers."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time

import pytest
import requests

from common import keys
from common.netguard import UnsafeUrl, check_callback_url
from common.settings import Settings
from common.storage import rendition_object
from tests import songflow
from tests.helpers import (
    LiveWorker,
    b64,
    submit,
    wait_for,
    wait_for_status,
)
from tests.servers import CallbackReceiver, TcpProxy
from tests.test_bad_input import assert_nothing_stored
from worker.runtime import callback

MODEL = "demucs_unittest"


@pytest.fixture
def client(make_client):
    return make_client(CALLBACK_ALLOW_PRIVATE="false")


def separated(client, jobs, storage, mp3: bytes) -> str:
    """A song taken through separation and its mp3 rendition, as the workers do."""
    song_hash = client.post("/apiv1/separate", json={"mp3": b64(mp3)}).json["hash"]
    songflow.separate_and_render(jobs, storage, song_hash)
    return song_hash


def stem_exists(storage, song_hash: str, stem: str) -> bool:
    return storage._exists(storage.output_bucket,
                           rendition_object(song_hash, MODEL, "mp3-320", f"{stem}.mp3"))


def track_listed(client, song_hash: str, stem: str) -> bool:
    return f"{stem}.mp3" in client.get(f"/apiv1/status/{song_hash}").json["tracks"]


# -- what is submitted --------------------------------------------------------------------
def test_audio_hidden_behind_a_tag_counts_toward_the_cap(make_client, redis_client, storage,
                                                         make_mp3):
    loud = make_mp3(20, seed=0, samplerate=8000, channels=1, bitrate=64)
    hidden = make_mp3(40, seed=1, samplerate=8000, channels=1, bitrate=8)
    client = make_client(MAX_DURATION_S="30")
    response = client.post("/apiv1/separate",
                           json={"mp3": b64(loud + b"TAG" + bytes(125) + hidden)})
    assert response.status_code == 422 and "the limit is 30 s" in response.json["error"]
    assert_nothing_stored(redis_client, storage)
    assert client.post("/apiv1/separate", json={"mp3": b64(loud)}).status_code == 200


def test_a_song_shorter_than_the_minimum_is_refused(make_client, redis_client, storage,
                                                    short_mp3, make_mp3):
    two_frames = make_mp3(0.05)
    assert len(two_frames) < 2000
    response = make_client().post("/apiv1/separate", json={"mp3": b64(two_frames)})
    assert response.status_code == 422 and "shortest accepted is 1 s" in response.json["error"]
    assert_nothing_stored(redis_client, storage)
    assert make_client(MIN_DURATION_S="5").post(
        "/apiv1/separate", json={"mp3": b64(short_mp3)}).status_code == 422


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,
    '{"mp3": "SUQz", "callback": {"url": "https://hook.invalid/", "data": '
    + "[" * 100_000 + "]" * 100_000 + "}}",
    '{"mp3": "SUQz", "callback": {"url": "https://hook.invalid/", "data": '
    + '{"a": ' * 40 + "1" + "}" * 40 + "}}",
], ids=["body", "callback-data-beyond-recursion", "callback-data-40-levels"])
def test_deeply_nested_json_is_refused(client, redis_client, storage, body):
    response = client.post("/apiv1/separate", data=body, content_type="application/json")
    assert response.status_code == 400, response.json
    assert "deeper than" in response.json["error"]
    assert_nothing_stored(redis_client, storage)


def test_callback_data_is_capped(make_client, redis_client, storage, short_mp3):
    client = make_client(MAX_CALLBACK_DATA_KB="1")
    hook = "https://hook.invalid/hook"
    big = {"mp3": b64(short_mp3), "callback": {"url": hook, "data": "x" * 2000}}
    response = client.post("/apiv1/separate", json=big)
    assert response.status_code == 413 and "1 KiB" in response.json["error"]
    assert_nothing_stored(redis_client, storage)
    small = {"mp3": b64(short_mp3), "callback": {"url": hook, "data": "x" * 900}}
    assert client.post("/apiv1/separate", json=small).status_code == 200


def test_base64_with_stray_bits_after_the_last_byte_is_refused(client, redis_client, storage,
                                                               short_mp3):
    for length in (len(short_mp3) - len(short_mp3) % 3 + 1, len(short_mp3) - len(short_mp3) % 3
                   + 2):
        mp3 = (short_mp3 * 2)[:length]
        text = b64(mp3)
        padding = len(text) - len(text.rstrip("="))
        last = text[-padding - 1]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        stray = text[:-padding - 1] + alphabet[alphabet.index(last) + 1] + "=" * padding
        assert base64.b64decode(stray) == mp3  # the same bytes, another text, another hash
        response = client.post("/apiv1/separate", json={"mp3": stray})
        assert response.status_code == 400 and "canonical" in response.json["error"]
        assert_nothing_stored(redis_client, storage)


# -- callbacks ----------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "http://[::127.0.0.1]/hook", "http://[::7f00:1]/hook", "http://[64:ff9b::7f00:1]/hook",
    "http://[64:ff9b::a00:1]/hook", "http://[2002:7f00:1::]/hook",
    "http://[2002:a9fe:a9fe::]/latest/meta-data/", "http://[64:ff9b:1::7f00:1]/hook",
    "http://[::ffff:0:7f00:1]/hook", "http://hook.invalid:0/hook", "http://10.0.0.1:0/hook",
])
def test_private_addresses_spelled_in_ipv6_and_port_0_are_refused(client, redis_client, storage,
                                                                   short_mp3, url):
    response = client.post("/apiv1/separate",
                           json={"mp3": b64(short_mp3), "callback": {"url": url}})
    assert response.status_code == 400 and "callback" in response.json["error"]
    assert_nothing_stored(redis_client, storage)
    settings_private_off = Settings.from_env({"CALLBACK_ALLOW_PRIVATE": "false",
                                              "CALLBACK_RETRIES": "1"})
    assert callback.send(url, {}, "id", settings_private_off).startswith("refused: ")


def test_public_addresses_embedded_in_ipv6_still_pass():
    for url in ("http://[64:ff9b::808:808]/", "http://[2002:808:808::1]/", "http://[::8.8.8.8]/"):
        assert check_callback_url(url, allow_private=False)[1]
    with pytest.raises(UnsafeUrl):
        check_callback_url("http://[::1]/", allow_private=False)


def test_a_refused_callback_does_not_tell_what_names_resolve_to(caplog):
    with CallbackReceiver() as receiver:
        url = receiver.url.replace("127.0.0.1", "localhost")
        private_off = Settings.from_env({"CALLBACK_ALLOW_PRIVATE": "false"})
        outcome = callback.send(url, {}, "id", private_off)
    assert outcome == "refused: localhost resolves to a non-public address"
    assert receiver.count == 0
    assert "127.0.0.1" in caplog.text or "::1" in caplog.text  # the detail is in the log


# -- removing -------------------------------------------------------------------------------
def test_head_never_removes(client, jobs, storage, short_mp3):
    song_hash = separated(client, jobs, storage, short_mp3)
    response = client.head(f"/apiv1/remove/{song_hash}/bass.mp3")
    assert response.status_code == 405 and "GET, DELETE" in response.headers["Allow"]
    assert stem_exists(storage, song_hash, "bass") and track_listed(client, song_hash, "bass")


def test_removal_can_require_delete(make_client, jobs, storage, short_mp3):
    client = make_client(REMOVE_REQUIRES_DELETE="true")
    song_hash = separated(client, jobs, storage, short_mp3)
    refused = client.get(f"/apiv1/remove/{song_hash}/bass.mp3")
    assert refused.status_code == 405 and refused.headers["Allow"] == "DELETE"
    assert "DELETE" in refused.json["error"]
    assert stem_exists(storage, song_hash, "bass")
    assert client.delete(f"/apiv1/remove/{song_hash}/bass.mp3").status_code == 200
    assert not stem_exists(storage, song_hash, "bass")


def test_a_remove_that_fails_changes_nothing(make_client, jobs, storage, s3_server, short_mp3):
    proxy = TcpProxy(s3_server)
    try:
        client = make_client(MINIO_HOST=proxy.address)
        song_hash = separated(client, jobs, storage, short_mp3)
        proxy.cut()
        response = client.delete(f"/apiv1/remove/{song_hash}/drums.mp3")
        assert response.status_code == 503 and response.headers["Retry-After"]
        proxy.restore()
        assert track_listed(client, song_hash, "drums") and stem_exists(storage, song_hash,
                                                                        "drums")
        assert client.delete(f"/apiv1/remove/{song_hash}/drums.mp3").status_code == 200
        assert not track_listed(client, song_hash, "drums")
        assert not stem_exists(storage, song_hash, "drums")
    finally:
        proxy.close()


# -- a store that lost its buckets ------------------------------------------------------------
def _drop_bucket(storage, bucket: str) -> None:
    for obj in storage.client.list_objects(bucket, recursive=True):
        storage.client.remove_object(bucket, obj.object_name)
    storage.client.remove_bucket(bucket)


def test_a_lost_bucket_is_an_outage_and_is_created_again(client, redis_client, storage,
                                                         short_mp3):
    _drop_bucket(storage, storage.songs_bucket)
    response = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert redis_client.llen(keys.QUEUE) == 0 and not redis_client.keys("job:*")
    assert storage.client.bucket_exists(storage.songs_bucket)  # created again
    assert client.post("/apiv1/separate", json={"mp3": b64(short_mp3)}).status_code == 200
    _drop_bucket(storage, storage.output_bucket)
    assert client.get("/readyz").status_code == 200
    assert storage.client.bucket_exists(storage.output_bucket)


# -- what the answers tell --------------------------------------------------------------------
def test_readiness_tells_anonymous_callers_a_status_word_only(make_client, caplog):
    client = make_client(REDIS_URL="redis://127.0.0.1:1/0", MINIO_HOST="127.0.0.1:1")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {"error": "not ready"}
    assert "127.0.0.1:1" in caplog.text  # the details are in the log


def test_every_answer_is_json_and_not_sniffed(client):
    options = client.options("/apiv1/separate")
    assert options.status_code == 200 and options.is_json
    assert "POST" in options.json["methods"] and "POST" in options.headers["Allow"]
    for response in (options, client.get("/healthz"), client.get("/apiv1/nothing"),
                     client.put("/apiv1/queue")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.is_json and json.loads(response.data)


# -- against gunicorn, as configured in rest/gunicorn.conf.py ---------------------------------
def _slow_body(port: int) -> socket.socket:
    """A connection that sends headers for a 100 KB body, then 10 bytes of it, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /apiv1/separate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"mp3\": \"AA")
    return sock


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_slow_bodies_neither_freeze_the_gateway_nor_stay_for_ever(live_stack, redis_client,
                                                                  storage):
    base_url = live_stack.start_rest(BODY_TIMEOUT_S="4")
    port = int(base_url.rsplit(":", 1)[1])
    slow = [_slow_body(port) for _ in range(32)]
    try:
        time.sleep(0.5)  # every slow request is being read by now
        for _ in range(5):
            started = time.monotonic()
            assert requests.get(f"{base_url}/healthz", timeout=3).status_code == 200
            assert requests.get(f"{base_url}/readyz", timeout=3).status_code == 200
            assert time.monotonic() - started < 1
        answer = http.client.HTTPResponse(slow[0])  # after the body's deadline
        answer.begin()
        assert answer.status == 408 and json.loads(answer.read())["error"]
    finally:
        for sock in slow:
            sock.close()
    assert_nothing_stored(redis_client, storage)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_uploads_beyond_the_concurrent_limit_wait_their_turn(live_stack, redis_client, storage,
                                                             make_mp3):
    base_url = live_stack.start_rest(WEB_CONCURRENCY="1", MAX_CONCURRENT_UPLOADS="1")
    song = {"mp3": b64(make_mp3(2, seed=80))}
    slow = _slow_body(int(base_url.rsplit(":", 1)[1]))  # holds the one upload slot
    try:
        # An empty body is a 400 while the slot is free: it shows when the slow one holds it.
        wait_for(lambda: requests.post(f"{base_url}/apiv1/separate", json={},
                                       timeout=20).status_code == 503, 30,
                 "the slow upload never held the slot")
        refused = requests.post(f"{base_url}/apiv1/separate", json=song, timeout=20)
        assert refused.status_code == 503 and "Retry-After" in refused.headers
        assert "uploads" in refused.json()["error"]
        assert requests.get(f"{base_url}/healthz", timeout=3).status_code == 200
    finally:
        slow.close()
    assert_nothing_stored(redis_client, storage)
    wait_for(lambda: requests.post(f"{base_url}/apiv1/separate", json=song,
                                   timeout=10).status_code == 200, 10,
             "the slot was not given back when the slow client went away")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_gunicorn_own_errors_are_json_and_no_server_is_announced(live_stack):
    base_url = live_stack.start_rest()
    too_long = requests.get(f"{base_url}/apiv1/status/{'a' * 9000}", timeout=10)
    assert too_long.status_code == 414
    assert too_long.headers["Content-Type"] == "application/json"
    assert "too long" in too_long.json()["error"]
    port = int(base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /apiv1/separate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                     b"\r\nContent-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        assert answer.status == 400
        assert answer.getheader("Content-Type") == "application/json"
        assert json.loads(answer.read())["error"]
    for response in (requests.get(f"{base_url}/healthz", timeout=10), too_long):
        assert "Server" not in response.headers
        assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_store_that_lost_its_output_bucket_is_an_outage_for_the_worker(live_stack, storage,
                                                                        make_mp3):
    worker = LiveWorker(live_stack).wait_ready()
    base_url = live_stack.start_rest()
    render_log = live_stack.folder / "render-1.log"  # started with the worker; it makes the
    wait_for(lambda: "waiting for songs" in render_log.read_text(), 60,  # buckets at start
             "the render worker never became ready")
    _drop_bucket(storage, storage.output_bucket)  # an S3 restart that lost its data
    songs = [submit(base_url, make_mp3(2, seed=70 + n)) for n in range(2)]
    for song_hash in songs:
        assert wait_for_status(base_url, song_hash)["status"] == "done", worker.log()
    assert worker.process.poll() is None
    assert "handed back" in worker.log()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_chaos_soaks_hostile_round_is_refused_entirely(live_stack, redis_client, storage):
    from scripts.chaos.hostile import hostile_round

    base_url = live_stack.start_rest(MAX_DURATION_S="60", BODY_TIMEOUT_S="3")
    sent, wrong = hostile_round(base_url)
    assert sent >= 18 and wrong == []
    assert_nothing_stored(redis_client, storage)
