"""The frame walker that tells MP3s from other bytes and measures how long they play."""

import pytest

from rest.probe.mp3 import NotAnMp3, parse_header, probe


def id3v2_tag(payload: bytes = b"TIT2\x00\x00\x00\x05\x00\x00\x00song") -> bytes:
    size = len(payload)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + payload


@pytest.mark.parametrize("seconds, samplerate, channels, kbps", [
    (3, 44100, 2, 128), (2, 22050, 1, 32), (2, 8000, 1, 8), (1, 48000, 2, 320)])
def test_durations_match_the_audio(make_mp3, seconds, samplerate, channels, kbps):
    from scripts.local.make_samples import synthesize
    from worker.render.encode import encode_mp3

    mp3 = encode_mp3(synthesize(seconds, samplerate)[:channels], samplerate, kbps)
    info = probe(mp3)
    assert info.sample_rate == samplerate
    assert abs(info.duration_s - seconds) < 0.2


def test_tags_around_the_audio_are_accepted(short_mp3):
    tagged = id3v2_tag() + short_mp3 + b"TAG" + bytes(125)
    assert abs(probe(tagged).duration_s - probe(short_mp3).duration_s) < 0.01


def test_leading_junk_is_skipped(short_mp3):
    assert probe(bytes(100) + short_mp3).frames == probe(short_mp3).frames


@pytest.mark.parametrize("data, words", [
    (b"\x89PNG\r\n\x1a\n" + bytes(500), "no MPEG audio frame"),
    (b"PK\x03\x04" + bytes(500), "no MPEG audio frame"),
    (bytes(4096), "no MPEG audio frame"),
    (b"\xff\xfb\x90\x00" + bytes(2000), "no MPEG audio frame"),
    (id3v2_tag(), "no audio frames"),
])
def test_non_mp3_data_is_refused(data, words):
    with pytest.raises(NotAnMp3, match=words):
        probe(data)


def test_an_mp3_whose_middle_is_garbage_is_refused(short_mp3):
    broken = short_mp3[:2000] + bytes(len(short_mp3) - 2000)
    with pytest.raises(NotAnMp3, match="corrupt"):
        probe(broken)


def test_header_fields():
    frame = parse_header(b"\xff\xfb\x90\x00", 0)  # MPEG-1 layer III, 128 kbps, 44.1 kHz
    assert (frame.length, frame.samples, frame.sample_rate) == (417, 1152, 44100)
    assert parse_header(b"\xff\xfb\xf0\x00", 0) is None  # bitrate index 15 is invalid
    assert parse_header(b"\xff\xfb\x0c\x00", 0) is None  # sample rate index 3 is reserved


def ape_tag(items: bytes) -> bytes:
    """An APEv2 tag with header and footer around `items`."""
    def block(flags: int) -> bytes:
        return (b"APETAGEX" + (2000).to_bytes(4, "little") + (len(items) + 32).to_bytes(4, "little")
                + (1).to_bytes(4, "little") + flags.to_bytes(4, "little") + bytes(8))
    return block(0xA0000000) + items + block(0x80000000)


# -- hostile files: the probe counts what the worker's decoder plays ----------------------------
def _frames(mp3: bytes) -> list[bytes]:
    out, pos = [], 0
    while (frame := parse_header(mp3, pos)) is not None:
        out.append(mp3[pos:pos + frame.length])
        pos += frame.length
    return out


@pytest.fixture(scope="module")
def parts():
    """20 s at 64 kbps and 60 s at 8 kbps, both 8 kHz mono: the second is small enough to hide."""
    from scripts.local.make_samples import song_mp3

    return (song_mp3(20, seed=0, samplerate=8000, channels=1, bitrate=64),
            song_mp3(60, seed=1, samplerate=8000, channels=1, bitrate=8))


@pytest.mark.parametrize("shape", ["tag-in-the-middle", "ape-in-the-middle", "lyrics-marker",
                                   "junk-byte-between-frames"])
def test_audio_hidden_after_a_marker_or_between_junk_is_counted(parts, shape):
    from tests.stems import decode

    loud, quiet = parts
    hidden = {
        "tag-in-the-middle": loud + b"TAG" + bytes(125) + quiet,
        "ape-in-the-middle": loud + b"APETAGEX" + bytes(24) + quiet,
        "lyrics-marker": loud + b"LYRICSBEGIN" + quiet,
        "junk-byte-between-frames": loud + b"".join(f + b"\x00" for f in _frames(quiet)),
    }[shape]
    decoded_s = decode(hidden, 8000, 1).shape[-1] / 8000
    assert decoded_s > 79  # the decoder plays both parts
    assert abs(probe(hidden).duration_s - decoded_s) < 0.5


def test_the_walk_stops_once_past_the_cap(parts):
    loud, quiet = parts
    info = probe(loud + quiet, stop_after_s=5)
    assert 5 < info.duration_s < 5.5


def test_junk_is_bounded_whatever_the_share_of_frames(parts):
    loud, _ = parts
    # 70 KB of bytes that are no audio: under half of the file, over the junk limit.
    with pytest.raises(NotAnMp3, match="not audio"):
        probe(loud + bytes(70_000))
    # A cover-art sized tail of tags is not junk.
    art = ape_tag(bytes(range(256)) * 800)
    assert abs(probe(loud + art).duration_s - 20) < 0.5
