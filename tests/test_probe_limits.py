"""Uploads built to make the format probes walk for ever, or trip on a box cut short: each is a
4xx saying what is wrong, found after at most MAX_PIECES pieces, and nothing is stored. The
real probes, and the gateway on real Redis and S3 servers."""

from __future__ import annotations

import io

import pytest

from rest.probe import NotAudio, probe
from rest.probe.reader import MAX_PIECES
from scripts.chaos.hostile import chunked_wav as wav_behind
from scripts.chaos.hostile import m4a_with_empty_mdhd
from scripts.chaos.hostile import mp4_box as box
from tests.audio_files import audio_file
from tests.test_bad_input import assert_nothing_stored


def upload(client, data: bytes, name: str):
    return client.post("/apiv1/separate", content_type="multipart/form-data",
                       data={"file": (io.BytesIO(data), name)})


def test_a_wav_of_more_chunks_than_any_file_needs_is_refused(make_client, redis_client, storage):
    assert probe(wav_behind(MAX_PIECES - 3)).duration_s == 2
    # Each chunk was walked to the end before: 10 s for 100 MB of them (13 million).
    answer = upload(make_client(), wav_behind(50_000), "chunks.wav")
    assert answer.status_code == 400, answer.json
    assert answer.json["error"] == (
        "the upload is not audio this service reads: the file holds more than "
        f"{MAX_PIECES} RIFF chunks before its audio, which no audio file needs: it is "
        "malformed or crafted")
    assert_nothing_stored(redis_client, storage)


def test_an_m4a_whose_media_header_is_cut_short_is_malformed_not_an_error(
        make_client, redis_client, storage):
    answer = upload(make_client(), m4a_with_empty_mdhd(), "short.m4a")
    assert answer.status_code == 400, answer.json
    assert "the M4A media header (mdhd box) is cut short" in answer.json["error"]
    assert "malformed" in answer.json["error"]
    assert_nothing_stored(redis_client, storage)


def test_an_m4a_of_more_boxes_than_any_file_needs_is_refused():
    real = audio_file("m4a", 2)
    mdat = real.index(b"mdat") - 4  # FFmpeg writes the movie header after the media data

    def with_free_boxes(count: int) -> bytes:
        return real[:mdat] + box(b"free") * count + real[mdat:]

    assert probe(with_free_boxes(100)).format == "m4a"
    with pytest.raises(NotAudio, match=f"more than {MAX_PIECES} MP4 boxes"):
        probe(with_free_boxes(MAX_PIECES + 1))


def test_flac_of_more_metadata_blocks_than_any_file_needs_is_refused():
    real = audio_file("flac", 2)
    streaminfo_end = 4 + 4 + 34
    assert not real[4] & 0x80, "STREAMINFO is not the last block"
    padding = b"\x01\0\0\0"  # an empty PADDING block, not the last
    assert probe(real[:streaminfo_end] + padding * 10 + real[streaminfo_end:]).format == "flac"
    with pytest.raises(NotAudio, match=f"more than {MAX_PIECES} FLAC metadata blocks"):
        probe(real[:streaminfo_end] + padding * (MAX_PIECES + 1) + real[streaminfo_end:])


def test_more_id3_tags_than_any_file_needs_are_refused(short_mp3):
    empty_tag = b"ID3\x04\0\0\0\0\0\0"
    assert probe(empty_tag * 10 + short_mp3).format == "mp3"
    with pytest.raises(NotAudio, match=f"more than {MAX_PIECES} ID3 tags"):
        probe(empty_tag * (MAX_PIECES + 1) + short_mp3)


def test_aac_followed_by_a_tag_and_sync_words_is_refused_without_walking_them_all():
    real = audio_file("aac", 2)
    assert probe(real + b"TAG" + b"\xff\xf1\0\0\0\0\0" * 10).format == "aac"
    with pytest.raises(NotAudio, match="the AAC stream is broken"):
        probe(real + b"TAG" + b"\xff\xf1" * 5_000_000)
