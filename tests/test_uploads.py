"""Multipart uploads: streamed to a temporary file while the base64 hash is taken, the same
hash as the JSON field gives; the size limit applies while the part is read."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random

import pytest
from urllib3 import encode_multipart_formdata

from common import keys
from common.storage import song_object
from rest.upload import Base64Hash
from tests.audio_files import FORMATS, audio_file
from tests.helpers import b64


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 100, 4097])
def test_the_hash_of_pieces_is_the_hash_of_the_whole_base64_text(size):
    data = random.Random(size).randbytes(size)
    expected = hashlib.sha256(base64.b64encode(data)).hexdigest()
    for seed in range(5):
        cuts = sorted(random.Random(seed).sample(range(size + 1), min(size + 1, 4)))
        hasher = Base64Hash()
        for start, end in zip([0, *cuts], [*cuts, size], strict=True):
            hasher.update(data[start:end])
        assert hasher.hexdigest() == expected


# -- multipart uploads through the app, on the real Redis and S3 servers -----------------------


@pytest.fixture
def client(make_client):
    return make_client()


def upload(client, data: bytes, filename: str = "song", **fields):
    return client.post("/apiv1/separate", content_type="multipart/form-data",
                       data={"file": (io.BytesIO(data), filename), **fields})


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_uploads_with_the_hash_of_its_base64(client, jobs, storage, fmt):
    data = audio_file(fmt, 2, seed=3)
    response = upload(client, data, filename="anything.bin")
    assert response.status_code == 200, response.json
    song_hash = response.json["hash"]
    assert song_hash == hashlib.sha256(base64.b64encode(data)).hexdigest()
    assert response.json["reason"] == "Song enqueued for separation"
    stored = storage.client.get_object(storage.songs_bucket, song_object(song_hash, fmt)).read()
    assert stored == data
    assert jobs.get(song_hash).input == song_object(song_hash, fmt)
    # The same file as JSON is the same song.
    again = client.post("/apiv1/separate", json={"mp3": b64(data)}).json
    assert again == {"hash": song_hash, "reason": "Song already queued"}


def test_an_m4a_sent_as_json_is_stored_as_m4a(client, jobs, storage):
    m4a = audio_file("m4a", 2, seed=4)
    response = client.post("/apiv1/separate", json={"mp3": b64(m4a)})
    assert response.status_code == 200, response.json
    song_hash = response.json["hash"]
    name = song_object(song_hash, "m4a")
    assert name == f"{song_hash}.m4a" and jobs.get(song_hash).input == name
    assert storage.client.stat_object(storage.songs_bucket, name).content_type == "audio/mp4"
    assert storage.client.get_object(storage.songs_bucket, name).read() == m4a
    assert upload(client, m4a).json == {"hash": song_hash, "reason": "Song already queued"}


def test_form_fields_carry_the_options_and_the_callback(client, jobs):
    callback = {"url": "https://hook.invalid/hook", "data": {"id": 7}}
    response = upload(client, audio_file("wav", 2), format="flac", bits="24",
                      two_stems="vocals", callback=json.dumps(callback))
    assert response.status_code == 200, response.json
    job = jobs.get(response.json["hash"])
    assert (job.rendition, job.callback) == ("flac-24+vocals", callback)


@pytest.mark.parametrize("fields, status, words", [
    ({"format": "ogg"}, 400, "mp3, wav, flac"),
    ({"format": "wav", "bits": "8"}, 400, "16, 24"),
    ({"format": "mp3", "bitrate": "100"}, 400, "320"),
    ({"format": "wav", "bitrate": "320"}, 400, "bits"),
    ({"bits": "24"}, 400, "bitrate"),
    ({"bitrate": "loud"}, 400, "whole number"),
    ({"model": "nosuch"}, 400, "demucs_unittest"),
    ({"two_stems": "guitar"}, 400, "drums, bass, other, vocals"),
    ({"two_stems": "no_vocals"}, 400, "stem name"),
    ({"callback": "{not json"}, 400, "callback"),
    ({"callback": json.dumps({"url": "file:///etc/passwd"})}, 400, "callback"),
])
def test_bad_options_are_refused_naming_the_choices(client, redis_client, storage, fields,
                                                     status, words):
    response = upload(client, audio_file("wav", 2), **fields)
    assert response.status_code == status, response.json
    assert words in response.json["error"]
    assert not redis_client.keys("job:*")
    assert not list(storage.client.list_objects(storage.songs_bucket))


@pytest.mark.parametrize("data, status, words", [
    (b"", 400, "empty"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), 400, "not audio"),
    (b"\x00\x00\x00\x10ftypM4A \x00\x00\x00\x00", 400, "moov"),
])
def test_files_that_are_not_accepted_audio_are_refused(client, redis_client, storage, data,
                                                       status, words):
    response = upload(client, data)
    assert response.status_code == status, response.json
    assert words in response.json["error"]
    assert not redis_client.keys("job:*")
    assert not list(storage.client.list_objects(storage.songs_bucket))


def test_a_missing_file_part_is_refused(client):
    response = client.post("/apiv1/separate", content_type="multipart/form-data",
                           data={"mp3": "SUQz"})
    assert response.status_code == 400 and "part named file" in response.json["error"]


def test_the_duration_limits_apply_to_uploads(make_client, redis_client):
    client = make_client(MAX_DURATION_S="2", MIN_DURATION_S="1")
    too_long = upload(client, audio_file("flac", 3))
    assert too_long.status_code == 422 and "limit is 2 s" in too_long.json["error"]
    too_short = upload(client, audio_file("wav", 0.5))
    assert too_short.status_code == 422 and "shortest" in too_short.json["error"]
    assert not redis_client.keys("job:*")


@pytest.mark.parametrize("seconds, words", [(3, "limit is 2 s"), (0.5, "shortest")])
def test_an_m4a_outside_the_duration_limits_is_refused_either_way(make_client, redis_client,
                                                                   storage, seconds, words):
    client = make_client(MAX_DURATION_S="2", MIN_DURATION_S="1")
    m4a = audio_file("m4a", seconds)
    for response in (upload(client, m4a), client.post("/apiv1/separate", json={"mp3": b64(m4a)})):
        assert response.status_code == 422 and words in response.json["error"], response.json
    assert not redis_client.keys("job:*")
    assert not list(storage.client.list_objects(storage.songs_bucket))


def test_a_file_over_the_limit_is_refused_while_it_is_read(make_client, redis_client, storage):
    client = make_client(MAX_UPLOAD_MB="1")
    # Encoded here: the test client would spool a large body to a file it never closes.
    body, content_type = encode_multipart_formdata(
        {"file": ("song.wav", audio_file("wav", 1) + bytes(1024 * 1024))})
    response = client.post("/apiv1/separate", data=body, content_type=content_type)
    assert response.status_code == 413 and "1 MB" in response.json["error"]
    assert redis_client.llen(keys.QUEUE) == 0
    assert not list(storage.client.list_objects(storage.songs_bucket))
