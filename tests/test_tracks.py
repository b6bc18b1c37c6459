"""Track names, formats and renditions: parsing and formatting agree, bad names say the choices."""

from __future__ import annotations

import pytest

from common import tracks
from common.tracks import Rendition, Track, TrackError


@pytest.mark.parametrize(("name", "track"), [
    ("vocals.flac", Track("vocals", "flac")),
    ("no_vocals.mp3", Track("vocals", "mp3", without=True)),
    ("base.mp3", Track("bass", "mp3")),
    ("bass", Track("bass", "mp3")),
    ("guitar.wav", Track("guitar", "wav")),
])
def test_track_names_parse_and_format_back(name, track):
    assert tracks.parse_track(name) == track
    assert track.name == name.replace("base", "bass") + ("" if "." in name else ".mp3")


@pytest.mark.parametrize("name", ["vocals.ogg", "no_.mp3", "../x.mp3", "_x.mp3", ".mp3"])
def test_bad_track_names_are_refused(name):
    with pytest.raises(TrackError):
        tracks.parse_track(name)


def test_the_default_rendition_is_every_stem_as_mp3_at_the_bitrate():
    default = tracks.default_rendition(320)
    assert default.id == "mp3-320"
    assert default.track_names(tracks.FOUR_STEMS) == [
        "drums.mp3", "bass.mp3", "other.mp3", "vocals.mp3"]
    assert tracks.rendition() == default


@pytest.mark.parametrize(("text", "expected", "names"), [
    ("wav-16", Rendition("wav", 16), ["drums.wav", "bass.wav", "other.wav", "vocals.wav"]),
    ("flac-24+vocals", Rendition("flac", 24, "vocals"), ["vocals.flac", "no_vocals.flac"]),
    ("mp3-128+drums", Rendition("mp3", 128, "drums"), ["drums.mp3", "no_drums.mp3"]),
])
def test_renditions_parse_and_name_their_tracks(text, expected, names):
    parsed = tracks.parse_rendition(text)
    assert parsed == expected and parsed.id == text
    assert parsed.track_names(tracks.FOUR_STEMS) == names


def test_options_become_renditions_with_per_format_defaults():
    assert tracks.rendition("wav").id == "wav-16"
    assert tracks.rendition("flac", 24).id == "flac-24"
    assert tracks.rendition("mp3", two_stems="base", default_bitrate=192).id == "mp3-192+bass"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: tracks.rendition("ogg"), "mp3, wav, flac"),
    (lambda: tracks.rendition("wav", 8), "16, 24"),
    (lambda: tracks.rendition("mp3", 100), "96, 112"),
    (lambda: tracks.rendition("mp3", two_stems="no_vocals"), "stem name"),
    (lambda: tracks.parse_rendition("mp3"), "<format>-<quality>"),
    (lambda: tracks.parse_rendition("mp3-x"), "<format>-<quality>"),
    (lambda: tracks.rendition(two_stems="guitar").check(tracks.FOUR_STEMS), "drums, bass"),
])
def test_bad_options_name_the_choices(call, message):
    with pytest.raises(TrackError, match=message):
        call()


def test_a_six_stem_model_offers_guitar_and_piano():
    assert tracks.known_stems("htdemucs_6s") == (*tracks.FOUR_STEMS, "guitar", "piano")
    assert tracks.rendition(two_stems="piano").check(tracks.known_stems("htdemucs_6s"))
    for model in ("htdemucs", "htdemucs_ft", "htdemucs_mmi", "mdx_extra_q", "demucs_unittest"):
        assert tracks.known_stems(model) == tracks.FOUR_STEMS
    assert tracks.known_stems("my_own_model") == ()


def test_lossless_stems_and_mime_types():
    assert tracks.lossless_track("vocals") == "vocals.flac"
    assert Track("bass", "mp3").mime == "audio/mpeg"
    assert Track("bass", "wav").mime == "audio/wav"
    assert Track("bass", "flac").mime == "audio/flac"
