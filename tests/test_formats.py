"""The format probes: each format recognised by its content, its length read from headers,
and files that only look like audio refused; the worker's decoder reads what is accepted."""

from __future__ import annotations

import struct

import pytest

from rest.probe import DECODED, NotAudio, probe
from tests.audio_files import FORMATS, audio_file
from tests.stems import decode


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("seconds, rate, channels", [(3, 44100, 2), (2, 22050, 1),
                                                     (1.5, 48000, 2)])
def test_each_format_is_recognised_with_its_length(fmt, seconds, rate, channels):
    data = audio_file(fmt, seconds, rate=rate, channels=channels)
    info = probe(data)
    assert info.format == fmt
    assert info.sample_rate == rate
    # Lossy encoders add a frame or two of priming and padding.
    assert seconds - 0.01 <= info.duration_s <= seconds + 0.15, info


@pytest.mark.parametrize("codec", ["aac", "alac"])
@pytest.mark.parametrize("faststart", [False, True])
def test_m4a_of_either_codec_with_its_movie_header_before_or_after_the_data(codec, faststart):
    data = audio_file("m4a", 2, rate=48000, subtype=codec, faststart=faststart)
    assert (data.index(b"moov") < data.index(b"mdat")) == faststart
    info = probe(data)
    assert (info.format, info.sample_rate, info.channels) == ("m4a", 48000, 2)
    assert 1.99 <= info.duration_s <= 2.05, info
    wav = decode(data, 44100, 2)
    assert wav.shape[0] == 2 and abs(wav.shape[1] / 44100 - info.duration_s) < 0.05


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT", "PCM_U8", "ULAW"])
def test_wav_sample_layouts(subtype):
    info = probe(audio_file("wav", 2, subtype=subtype))
    assert info.format == "wav" and abs(info.duration_s - 2) < 0.001


def test_flac_24_bit():
    info = probe(audio_file("flac", 2, subtype="PCM_24"))
    assert info.format == "flac" and info.channels == 2 and abs(info.duration_s - 2) < 0.001


def test_the_file_name_plays_no_part():
    """The same bytes are the same format, whatever a client calls them: there is no name."""
    wav = audio_file("wav", 1)
    assert probe(bytearray(wav)).format == probe(memoryview(wav)).format == "wav"


def _wav_with_data_size(wav: bytes, size: int) -> bytes:
    pos = wav.index(b"data")
    return wav[:pos + 4] + struct.pack("<I", size) + wav[pos + 8:]


def test_a_wav_counts_what_a_decoder_would_read():
    wav = audio_file("wav", 2)
    assert abs(probe(_wav_with_data_size(wav, 0xFFFFFFFF)).duration_s - 2) < 0.001
    assert abs(probe(_wav_with_data_size(wav, 2**31)).duration_s - 2) < 0.001  # lies: capped
    assert abs(probe(_wav_with_data_size(wav, 44100 * 4)).duration_s - 1) < 0.001


def _broken(fmt: str) -> bytes:
    data = audio_file(fmt, 1)
    cuts = {"wav": lambda: data[:data.index(b"data")],
            "flac": lambda: data[:60],
            "ogg": lambda: data[:28],
            "m4a": lambda: data[:data.index(b"moov") + 64],
            "aac": lambda: data[:2000] + b"\x00" * 500 + data[2000:],
            "mp3": lambda: data[:4] + bytes(range(256)) * 8}
    return cuts[fmt]()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_truncated_or_corrupt_file_is_refused(fmt):
    with pytest.raises(NotAudio):
        probe(_broken(fmt))


@pytest.mark.parametrize("data, words", [
    (b"RIFF\x24\x00\x00\x00WAVEdata\x00\x00\x00\x00", "fmt"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x02\x00\x02\x00\x44\xac\x00\x00"
     b"\x10\xb1\x02\x00\x04\x00\x04\x00data\x00\x00\x00\x00", "format tag"),
    (b"fLaC" + bytes(60), "STREAMINFO"),
    (b"\x00\x00\x00\x10ftypM4A \x00\x00\x00\x00", "moov"),
    (b"OggS" + bytes(40), "Ogg"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "not MP3, WAV, FLAC"),
    (b"tiny", "too few"),
])
def test_files_that_only_start_like_audio_are_refused(data, words):
    with pytest.raises(NotAudio, match=words):
        probe(data)


def test_flac_without_a_stated_length_is_refused():
    flac = bytearray(audio_file("flac", 1))
    flac[8 + 10 + 3:8 + 18] = bytes(5)  # total samples: the low 36 bits of STREAMINFO's word
    flac[8 + 10 + 3] = audio_file("flac", 1)[8 + 10 + 3] & 0xF0
    with pytest.raises(NotAudio, match="does not state its length"):
        probe(bytes(flac))


@pytest.mark.parametrize("rate, channels", [(48000, 2), (16000, 1)])
def test_ogg_opus_plays_at_48_khz_less_its_pre_skip(rate, channels):
    opus = audio_file("ogg", 2.5, rate=rate, channels=channels, subtype="OPUS")
    info = probe(opus)
    assert (info.format, info.sample_rate, info.channels) == ("ogg", 48000, channels)
    assert abs(info.duration_s - 2.5) < 0.001, info
    wav = decode(opus, 44100, 2)
    assert abs(wav.shape[1] / 44100 - info.duration_s) < 0.001


def test_aac_frames_hidden_after_a_tag_are_counted_as_an_error():
    aac = audio_file("aac", 2)
    with pytest.raises(NotAudio, match="broken"):
        probe(aac + b"TAG" + bytes(125) + aac)
    assert abs(probe(aac + b"TAG" + bytes(125)).duration_s - 2) < 0.1


@pytest.mark.parametrize("fmt", DECODED)
def test_the_worker_decodes_every_format_the_gateway_accepts(fmt):
    data = audio_file(fmt, 2, rate=22050, channels=1)
    wav = decode(data, 44100, 2)
    assert wav.shape[0] == 2
    assert abs(wav.shape[1] / 44100 - probe(data).duration_s) < 0.1
