"""Who may call what: API keys, read-only keys, protected reads, keys refused in the query
string, per-client rate limits and the queue bound. Flask's test client, real servers."""

from __future__ import annotations

import pytest

from common import keys
from tests.helpers import b64

RW, RO = "writer-key-0123", "reader-key-4567"
HASH = "0" * 64


@pytest.fixture
def make_client(make_client):
    """Clients of an app with one read-write and one read-only key, unless a test says otherwise."""
    return lambda **overrides: make_client(**{"API_KEYS": f"{RW},{RO}:ro", **overrides})


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def nothing_stored(redis_client, storage) -> bool:
    return (redis_client.llen(keys.QUEUE) == 0 and not redis_client.keys("job:*")
            and not list(storage.client.list_objects(storage.songs_bucket)))


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    (bearer("not-a-key"), 401),
    ({"Authorization": f"Basic {RW}"}, 401),
    ({"Authorization": "Bearer "}, 401),
    (bearer(RO), 403),
])
def test_submitting_needs_a_read_write_key(make_client, redis_client, storage, short_mp3,
                                           headers, status):
    response = make_client().post("/apiv1/separate", json={"mp3": b64(short_mp3)},
                                  headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert nothing_stored(redis_client, storage)


def test_a_read_write_key_submits_and_removes(make_client, short_mp3):
    client = make_client()
    response = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)}, headers=bearer(RW))
    assert response.status_code == 200
    song_hash = response.json["hash"]
    # Removing is a write: checked before the song's state is looked at.
    assert client.delete(f"/apiv1/remove/{song_hash}/bass.mp3").status_code == 401
    assert client.delete(f"/apiv1/remove/{song_hash}/bass.mp3",
                         headers=bearer(RO)).status_code == 403
    assert client.delete(f"/apiv1/remove/{song_hash}/bass.mp3",
                         headers=bearer(RW)).status_code == 404  # not separated yet
    assert client.get(f"/apiv1/remove/{song_hash}/bass.mp3").status_code == 401


@pytest.mark.parametrize("path", ["/apiv1/queue", f"/apiv1/status/{HASH}",
                                  f"/apiv1/track/{HASH}/bass.mp3"])
def test_reads_are_open_unless_protected(make_client, path):
    assert make_client().get(path).status_code in (200, 404)
    protected = make_client(PROTECT_READS="true")
    assert protected.get(path).status_code == 401
    assert protected.get(path, headers=bearer("wrong")).status_code == 401
    assert protected.get(path, headers=bearer(RO)).status_code in (200, 404)
    assert protected.get(path, headers=bearer(RW)).status_code in (200, 404)


@pytest.mark.parametrize("name", ["api_key", "apikey", "key", "token", "access_token",
                                  "API_KEY", "apiKey", "access-token", "Auth", "client_secret",
                                  "X-Api-Key", "password"])
def test_keys_in_the_query_string_are_refused(make_client, redis_client, storage, short_mp3,
                                              name):
    client = make_client()
    response = client.post(f"/apiv1/separate?{name}={RW}", json={"mp3": b64(short_mp3)},
                           headers=bearer(RW))
    assert response.status_code == 400 and "query string" in response.json["error"]
    assert client.get(f"/apiv1/queue?{name}={RO}").status_code == 400
    assert nothing_stored(redis_client, storage)
    assert client.get("/apiv1/queue?model=demucs_unittest&format=mp3").status_code == 200


def test_without_keys_configured_everything_is_open(make_client, short_mp3):
    client = make_client(API_KEYS="")
    assert client.post("/apiv1/separate", json={"mp3": b64(short_mp3)}).status_code == 200
    assert client.get("/apiv1/queue").status_code == 200


def test_health_probes_need_no_key(make_client):
    client = make_client(PROTECT_READS="true")
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.fixture
def write(short_mp3):
    """A write that is accepted (a resubmission of one song answers 200 each time)."""
    def post(client, key: str = RW) -> int:
        return client.post("/apiv1/separate", json={"mp3": b64(short_mp3)},
                           headers=bearer(key)).status_code
    return post


def refused_write(client, key: str = RW) -> int:
    """A write that passes the access checks and is then refused as an empty body (400)."""
    return client.post("/apiv1/separate", data="{}", content_type="application/json",
                       headers=bearer(key)).status_code


def test_writes_beyond_the_rate_limit_get_429_with_retry_after(make_client, write):
    client = make_client(RATE_LIMIT_PER_MIN="2")
    assert [write(client), write(client)] == [200, 200]
    refused = client.post("/apiv1/separate", data="{}", content_type="application/json",
                          headers=bearer(RW))
    assert refused.status_code == 429
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    assert "2 writes (submissions, removals, new renditions) per minute" in refused.json["error"]
    # Each key is a client of its own.
    other = make_client(RATE_LIMIT_PER_MIN="2", API_KEYS=f"{RW},other-writer")
    assert write(other, "other-writer") == 200


def test_the_rate_limit_is_a_rolling_minute(make_client, redis_client, write):
    client = make_client(RATE_LIMIT_PER_MIN="3")
    assert [write(client) for _ in range(4)] == [200, 200, 200, 429]
    # Move the first write 61 s into the past: one slot frees, and only one.
    (window,) = redis_client.keys("rate:*")
    first, score = redis_client.zrange(window, 0, 0, withscores=True)[0]
    redis_client.zadd(window, {first: score - 61_000})
    assert [write(client), write(client)] == [200, 429]
    # The other two writes are still in the window, so there is no fresh allowance to burst.
    assert redis_client.zcard(window) == 3


def test_refused_writes_do_not_use_up_the_limit(make_client, write):
    client = make_client(RATE_LIMIT_PER_MIN="3", API_KEYS=f"{RW},other-writer")
    assert {refused_write(client) for _ in range(20)} == {400}
    assert [write(client) for _ in range(4)] == [200, 200, 200, 429]
    # Refusals have their own, larger budget: ten per allowed write.
    assert {refused_write(client, "other-writer") for _ in range(30)} == {400}
    refusals_full = client.post("/apiv1/separate", data="{}", content_type="application/json",
                                headers=bearer("other-writer"))
    assert refusals_full.status_code == 429 and "refused" in refusals_full.json["error"]


def test_removing_is_a_rate_limited_write(make_client, write):
    client = make_client(RATE_LIMIT_PER_MIN="2")
    # Removes of a song that does not exist are refused (404), so they count as refusals.
    for method in ("GET", "DELETE"):
        assert client.open(f"/apiv1/remove/{HASH}/bass.mp3", method=method,
                           headers=bearer(RW)).status_code == 404
    assert [write(client), write(client)] == [200, 200]
    limited = client.delete(f"/apiv1/remove/{HASH}/bass.mp3", headers=bearer(RW))
    assert limited.status_code == 429 and limited.headers["Retry-After"]


def test_a_full_queue_refuses_new_songs_with_503_and_stores_nothing(make_client, redis_client,
                                                                    storage, make_mp3):
    client = make_client(MAX_QUEUE_LENGTH="1")
    first = client.post("/apiv1/separate", json={"mp3": b64(make_mp3(1, seed=1))},
                        headers=bearer(RW))
    assert first.status_code == 200
    response = client.post("/apiv1/separate", json={"mp3": b64(make_mp3(1, seed=2))},
                           headers=bearer(RW))
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert redis_client.lrange(keys.QUEUE, 0, -1) == [first.json["hash"]]
    assert [o.object_name for o in storage.client.list_objects(storage.songs_bucket)] == [
        f"{first.json['hash']}.mp3"]
