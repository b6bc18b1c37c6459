"""Songs belong to the keys that submitted them: another read-write key may not delete, cancel
or remove them (nor read them with PROTECT_READS), an admin key may, a second submitter becomes
an owner, and the queue shows each key its own songs. Without API_KEYS nothing of this applies.
Flask's test client on real Redis and S3 servers."""

from __future__ import annotations

import hashlib

import pytest

from common import keys
from tests import songflow
from tests.helpers import b64
from tests.test_access import bearer

ALICE, BOB, READER, ADMIN = "alice-key-0123", "bob-key-4567", "reader-key-89ab", "admin-key-cdef"
KEYS = f"{ALICE},{BOB}:rw,{READER}:ro,{ADMIN}:admin"


@pytest.fixture
def client(make_client):
    return make_client(API_KEYS=KEYS)


def submit(client, mp3: bytes, key: str) -> str:
    response = client.post("/apiv1/separate", json={"mp3": b64(mp3)}, headers=bearer(key))
    assert response.status_code == 200, response.json
    return response.json["hash"]


def writes(song_hash: str) -> list[tuple[str, str]]:
    """Every write route of a song, as (method, path)."""
    return [("POST", f"/apiv1/cancel/{song_hash}"),
            ("DELETE", f"/apiv1/remove/{song_hash}/bass.mp3"),
            ("GET", f"/apiv1/remove/{song_hash}/bass.mp3"),
            ("DELETE", f"/apiv1/song/{song_hash}")]


def test_another_key_may_not_change_a_song(client, jobs, storage, short_mp3):
    song_hash = submit(client, short_mp3, ALICE)
    songflow.separate_and_render(jobs, storage, song_hash)
    for method, path in writes(song_hash):
        refused = client.open(path, method=method, headers=bearer(BOB))
        assert refused.status_code == 403, (method, path, refused.json)
        assert refused.json["error"] == (
            f"song {song_hash} was submitted with another API key: only the keys that "
            "submitted it (or an admin key) may change it; submitting the song with this key "
            "makes it one of them")
    assert sorted(client.get(f"/apiv1/status/{song_hash}").json["tracks"]) == [
        "bass.mp3", "drums.mp3", "other.mp3", "vocals.mp3"]
    # What the key is recorded as: a hash of it, never the key.
    stored = jobs.owners(song_hash)
    assert stored == {hashlib.sha256(ALICE.encode()).hexdigest()[:32]}
    assert ALICE not in str(stored)
    assert client.delete(f"/apiv1/remove/{song_hash}/bass.mp3",
                         headers=bearer(ALICE)).status_code == 200
    assert client.delete(f"/apiv1/song/{song_hash}", headers=bearer(ALICE)).status_code == 200


def test_an_admin_key_may_change_any_song(client, jobs, storage, short_mp3):
    song_hash = submit(client, short_mp3, ALICE)
    assert client.post(f"/apiv1/cancel/{song_hash}", headers=bearer(ADMIN)).status_code == 200
    response = client.delete(f"/apiv1/song/{song_hash}", headers=bearer(ADMIN))
    assert response.status_code == 200 and response.json["jobs"] == 1


def test_a_second_submitter_becomes_an_owner(client, jobs, storage, short_mp3):
    song_hash = submit(client, short_mp3, ALICE)
    assert client.post(f"/apiv1/cancel/{song_hash}", headers=bearer(BOB)).status_code == 403
    assert submit(client, short_mp3, BOB) == song_hash  # "already queued": it has the bytes
    assert len(jobs.owners(song_hash)) == 2
    assert client.post(f"/apiv1/cancel/{song_hash}", headers=bearer(BOB)).status_code == 200


def test_protected_reads_are_for_the_owners(make_client, jobs, storage, short_mp3):
    client = make_client(API_KEYS=KEYS, PROTECT_READS="true")
    song_hash = submit(client, short_mp3, ALICE)
    songflow.separate_and_render(jobs, storage, song_hash)
    for path in (f"/apiv1/status/{song_hash}", f"/apiv1/track/{song_hash}/bass.mp3",
                 f"/apiv1/zip/{song_hash}", f"/apiv1/playback/{song_hash}",
                 f"/apiv1/lossless/{song_hash}/bass.flac"):
        refused = client.get(path, headers=bearer(BOB))
        assert refused.status_code == 403 and "may read it" in refused.json["error"], path
        assert client.get(path, headers=bearer(READER)).status_code == 403, path
        assert client.get(path, headers=bearer(ALICE)).status_code == 200, path
        assert client.get(path, headers=bearer(ADMIN)).status_code == 200, path


def test_reads_left_open_stay_open_to_everyone(client, short_mp3):
    song_hash = submit(client, short_mp3, ALICE)
    for headers in ({}, bearer(BOB), bearer(READER)):
        assert client.get(f"/apiv1/status/{song_hash}", headers=headers).status_code == 200


def test_the_queue_shows_a_key_its_own_songs_and_everyone_the_counts(client, make_mp3):
    alices = [submit(client, make_mp3(1, seed=n), ALICE) for n in range(2)]
    bobs = submit(client, make_mp3(1, seed=9), BOB)
    assert client.get("/apiv1/queue", headers=bearer(ALICE)).json == {
        "queue": alices, "length": 3, "in_flight": 0}
    assert client.get("/apiv1/queue", headers=bearer(BOB)).json["queue"] == [bobs]
    assert client.get("/apiv1/queue").json == {"queue": [], "length": 3, "in_flight": 0}
    assert client.get("/apiv1/queue", headers=bearer(READER)).json["queue"] == []
    assert client.get("/apiv1/queue", headers=bearer(ADMIN)).json["queue"] == [*alices, bobs]


def test_without_keys_songs_have_no_owners_and_anyone_may_change_them(make_client, jobs,
                                                                     redis_client, short_mp3):
    client = make_client(API_KEYS="")
    song_hash = client.post("/apiv1/separate", json={"mp3": b64(short_mp3)}).json["hash"]
    assert not redis_client.exists(keys.owners(song_hash))
    assert client.get("/apiv1/queue").json["queue"] == [song_hash]
    assert client.delete(f"/apiv1/song/{song_hash}").status_code == 200


def test_deleting_a_song_forgets_its_owners(client, redis_client, short_mp3):
    song_hash = submit(client, short_mp3, ALICE)
    assert client.delete(f"/apiv1/song/{song_hash}", headers=bearer(ALICE)).status_code == 200
    assert not redis_client.exists(keys.owners(song_hash))
    assert submit(client, short_mp3, BOB) == song_hash  # a new song now: Bob's alone
    assert client.post(f"/apiv1/cancel/{song_hash}", headers=bearer(ALICE)).status_code == 403
