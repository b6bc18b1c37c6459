"""What a hostile or careless client tried against the gateway, each refused or harmless:
renditions asked for without end, HEAD, a frozen object store, a delete racing a resubmission,
a form of a thousand parts, a key in the query string, NaN in callback data, /metrics read
without a key. Flask's test client (or gunicorn) on real Redis and S3 servers."""

from __future__ import annotations

import io
import signal
import threading
import time

import pytest
import requests

from common import keys, operations
from common.storage import Storage
from scripts.local import stack
from tests import songflow
from tests.helpers import b64, stop_process, wait_for
from tests.test_access import bearer

KEY = "render-key-0123"


def separated(client, jobs, storage, mp3: bytes, headers: dict | None = None) -> str:
    song_hash = client.post("/apiv1/separate", json={"mp3": b64(mp3)},
                            headers=headers or {}).json["hash"]
    songflow.separate_and_render(jobs, storage, song_hash)
    return song_hash


def renditions(song_hash: str) -> list[str]:
    """Far more track URLs of distinct renditions than a song may have."""
    urls = [f"/apiv1/track/{song_hash}/{stem}.mp3?bitrate={bitrate}"
            for stem in ("vocals", "no_vocals", "no_drums", "no_bass", "no_other")
            for bitrate in (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256)]
    return urls + [f"/apiv1/track/{song_hash}/vocals.{fmt}?bits={bits}"
                   for fmt in ("wav", "flac") for bits in (16, 24)]


# -- render work --------------------------------------------------------------------------
def test_a_song_has_at_most_max_renditions(make_client, jobs, storage, redis_client, short_mp3):
    client = make_client(RATE_LIMIT_PER_MIN="0", MAX_RENDITIONS_PER_SONG="5")
    song_hash = separated(client, jobs, storage, short_mp3)  # its first rendition: mp3-320
    answers = [client.get(url) for url in renditions(song_hash)[:90]]
    assert [answer.status_code for answer in answers[:4]] == [202] * 4
    assert {answer.status_code for answer in answers[4:]} == {409}
    assert redis_client.llen(keys.RENDER_QUEUE) == 4
    refused = answers[-1].json
    assert refused["error"].startswith(f"song {song_hash} has 5 renditions already, the most "
                                       "one song may have; ask for one of them: ")
    assert len(refused["renditions"]) == 5 and "mp3-320" in refused["renditions"]
    assert client.get(f"/apiv1/track/{song_hash}/vocals.mp3").status_code == 200  # stored one
    assert client.get(answers[0].request.url).status_code == 202  # one being made
    # Made for every song, the studio operations count against no limit of renditions.
    assert {job.rendition for job in jobs.song_jobs(song_hash)} >= set(operations.STUDIO)
    status = client.get(f"/apiv1/status/{song_hash}")
    assert status.status_code == 200 and status.json["analysis"]["mix"]["duration_s"] > 0


def test_a_full_render_queue_answers_503(make_client, jobs, storage, redis_client, make_mp3):
    client = make_client(RATE_LIMIT_PER_MIN="0", MAX_QUEUE_LENGTH="3")
    song_hash = separated(client, jobs, storage, make_mp3(2, seed=1))
    urls = renditions(song_hash)
    assert [client.get(url).status_code for url in urls[:3]] == [202] * 3
    full = client.get(urls[3])
    assert full.status_code == 503 and full.headers["Retry-After"]
    assert full.json == {"error": "the render queue is full (3 jobs); retry later"}
    assert redis_client.llen(keys.RENDER_QUEUE) == 3


def test_starting_renditions_counts_against_the_callers_rate_limit(make_client, jobs, storage,
                                                                   short_mp3):
    client = make_client(API_KEYS=KEY, RATE_LIMIT_PER_MIN="4")
    song_hash = separated(client, jobs, storage, short_mp3, bearer(KEY))  # one write
    urls = renditions(song_hash)
    assert [client.get(url).status_code for url in urls[:4]] == [202] * 4  # by address
    limited = client.get(urls[4])
    assert limited.status_code == 429 and limited.headers["Retry-After"]
    assert limited.json["error"].startswith("rate limit reached: 4 writes (submissions, "
                                            "removals, new renditions) per minute")
    assert client.get(urls[0]).status_code == 202  # asking again for one: no new work
    assert client.get(urls[4], headers=bearer(KEY)).status_code == 202  # the key counts alone


def test_head_never_starts_a_rendition(make_client, jobs, storage, redis_client, short_mp3):
    client = make_client()
    song_hash = separated(client, jobs, storage, short_mp3)
    for url in renditions(song_hash)[:10]:
        answer = client.head(url)
        assert answer.status_code == 404
    assert redis_client.llen(keys.RENDER_QUEUE) == 0
    assert client.head(f"/apiv1/track/{song_hash}/vocals.mp3").status_code == 200


# -- a store that stops answering -------------------------------------------------------------
@pytest.fixture
def own_store(tmp_path):
    """An S3 server of this test's own, which it may freeze; thawed and stopped afterwards."""
    port = stack.free_port()
    process = stack.start_object_store(port, tmp_path / "s3", tmp_path / "s3.log")
    yield port, process
    stop_process(process, signal.SIGCONT)
    stack.stop(process)


@pytest.mark.timeout(120)
def test_a_frozen_store_is_a_503_in_seconds(make_client, make_settings, jobs, own_store,
                                            short_mp3):
    port, process = own_store
    env = {"MINIO_HOST": f"127.0.0.1:{port}", "STORE_TIMEOUT_S": "2"}
    store = Storage(make_settings(**env))
    store.ensure_buckets()
    client = make_client(**env)
    song_hash = separated(client, jobs, store, short_mp3)
    assert client.get(f"/apiv1/track/{song_hash}/vocals.mp3").status_code == 200
    stop_process(process, signal.SIGSTOP)
    for path in ("/readyz", f"/apiv1/track/{song_hash}/vocals.mp3", f"/apiv1/zip/{song_hash}"):
        started = time.monotonic()
        answer = client.get(path)
        assert answer.status_code == 503, (path, answer.status_code)
        assert answer.json["error"] in ("not ready", "the object store is unavailable; retry "
                                                     "shortly"), path
        assert time.monotonic() - started < 12, path  # was 75 s: a minute per read, retried
    stop_process(process, signal.SIGCONT)
    assert client.get("/readyz").status_code == 200
    store.close()


# -- a delete racing a resubmission -----------------------------------------------------------
def test_a_resubmission_racing_a_delete_never_loses_its_input(make_client, jobs, storage,
                                                              redis_client, short_mp3):
    """Many real races: whenever the resubmission is answered 200 and its job is queued, the
    upload it refers to is in the store."""
    app_client = make_client(RATE_LIMIT_PER_MIN="0")
    outcomes = []
    for _ in range(25):
        song_hash = separated(app_client, jobs, storage, short_mp3)
        start = threading.Barrier(2)
        answers: dict[str, int] = {}

        def delete(client=app_client, song=song_hash, gate=start, seen=answers) -> None:
            gate.wait()
            seen["delete"] = client.delete(f"/apiv1/song/{song}").status_code

        def resubmit(client=app_client, gate=start, seen=answers) -> None:
            gate.wait()
            answer = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)})
            seen["submit"] = answer.status_code
            if answer.status_code == 409:
                assert "is being deleted; submit it again" in answer.json["error"]

        threads = [threading.Thread(target=delete), threading.Thread(target=resubmit)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        job = jobs.get(song_hash)
        if answers["submit"] == 200 and job is not None and job.status.value == "queued":
            assert storage.song_exists(song_hash, "mp3"), answers
            outcomes.append("kept")
        else:
            outcomes.append(f"{answers['submit']}/{job.status.value if job else None}")
        # Leave nothing for the next round.
        app_client.delete(f"/apiv1/song/{song_hash}")
        redis_client.delete(keys.QUEUE)
    assert answers  # every round ran both requests


# -- what is sent -------------------------------------------------------------------------
def test_a_form_of_too_many_parts_says_so(make_client, redis_client, storage, short_mp3):
    fields = {f"field{n}": "x" for n in range(1200)}
    answer = make_client().post("/apiv1/separate", content_type="multipart/form-data",
                                data={"file": (io.BytesIO(short_mp3), "song.mp3"), **fields})
    assert answer.status_code == 413
    assert answer.json["error"].startswith("the form has more than 1000 parts; send the file "
                                           "and only the fields the API names")
    assert not redis_client.keys("job:*")


def test_a_form_field_too_large_says_so(make_client, short_mp3):
    # Encoded here: the test client would spool a body this large to a file it never closes.
    body = (b'--b\r\nContent-Disposition: form-data; name="callback"\r\n\r\n' + b"x" * 600_000
            + b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="s.mp3"\r\n'
            b"\r\n" + short_mp3 + b"\r\n--b--\r\n")
    answer = make_client().post("/apiv1/separate", data=body,
                                content_type="multipart/form-data; boundary=b")
    assert answer.status_code == 413
    assert answer.json["error"].startswith("a form field is larger than 500000 bytes")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_callback_data_that_is_not_json_is_refused(make_client, redis_client, storage, short_mp3,
                                                   constant):
    client = make_client()
    callback = f'{{"url": "https://hook.invalid/", "data": {{"x": {constant}}}}}'
    body = f'{{"mp3": "{b64(short_mp3)}", "callback": {callback}}}'
    answer = client.post("/apiv1/separate", data=body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.json["error"] == (f"the body is not valid JSON: {constant} is not a JSON "
                                    "value (send a number, a string or null)")
    form = client.post("/apiv1/separate", content_type="multipart/form-data", data={
        "file": (io.BytesIO(short_mp3), "song.mp3"),
        "callback": callback})
    assert form.status_code == 400 and f"{constant} is not a JSON value" in form.json["error"]
    assert not redis_client.keys("job:*")


def test_metrics_need_a_key_when_reads_are_protected(make_client):
    protected = make_client(API_KEYS=KEY, PROTECT_READS="true")
    assert protected.get("/metrics").status_code == 401
    assert protected.get("/metrics", headers=bearer("not-a-key")).status_code == 401
    scraped = protected.get("/metrics", headers=bearer(KEY))
    assert scraped.status_code == 200 and b"micro_demucs_queue_length" in scraped.data
    assert protected.get("/healthz").status_code == 200
    assert make_client(API_KEYS=KEY).get("/metrics").status_code == 200  # reads left open


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_refused_key_in_the_query_string_is_not_logged(live_stack):
    base_url = live_stack.start_rest(API_KEYS=KEY)
    secret = "s3cr3t-value-that-must-not-be-logged"
    for query in (f"api_key={secret}", f"x=1&Access-Token={secret}", f"API%5FKEY={secret}"):
        answer = requests.get(f"{base_url}/apiv1/status/{'0' * 64}?{query}", timeout=10)
        assert answer.status_code == 400, answer.text
    log = live_stack.folder / "rest.log"
    wait_for(lambda: log.read_text().count("/apiv1/status/") >= 3, 10,
             "the access log shows no request")
    text = log.read_text()
    assert secret not in text
    assert "api_key=REDACTED" in text and "x=1&Access-Token=REDACTED" in text
