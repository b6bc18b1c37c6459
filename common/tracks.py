"""Stem and track names, output formats and renditions: the one place that knows them.

A rendition is `<format>-<quality>[+<stem>]`: `mp3-320`, `wav-16`, `flac-24`, `mp3-320+vocals`.
Its tracks are `<stem>.<ext>` for every stem of the model, or, with `+<stem>`, `<stem>.<ext>`
and `no_<stem>.<ext>` (the sum of the other stems). No torch, no Flask: both sides import it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Demucs's own order of sources (model.sources), for the models it publishes.
FOUR_STEMS = ("drums", "bass", "other", "vocals")
SIX_STEMS = (*FOUR_STEMS, "guitar", "piano")
ALIASES = {"base": "bass"}  # the original API's spelling, kept working
NOT = "no_"  # prefix of the two-stem track that holds every other stem
LOSSLESS = "flac"  # the format the separation worker keeps its stems in


class TrackError(ValueError):
    """A track, rendition or format name that does not parse; the message names the choices."""


@dataclass(frozen=True)
class Format:
    """One output format: its extension, mime type and the qualities it is made in."""

    name: str
    mime: str
    qualities: tuple[int, ...]  # kbps for mp3, bits per sample for wav and flac
    default_quality: int
    unit: str  # what a quality counts, for messages and the query parameter

    @property
    def ext(self) -> str:
        return self.name


MP3_BITRATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
FORMATS = {
    "mp3": Format("mp3", "audio/mpeg", MP3_BITRATES, 320, "bitrate"),
    "wav": Format("wav", "audio/wav", (16, 24), 16, "bits"),
    "flac": Format("flac", "audio/flac", (16, 24), 16, "bits"),
}


def audio_format(name: str) -> Format:
    """The format called `name`; TrackError naming the formats otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise TrackError(f"unknown format {name!r}; choose one of "
                         f"{', '.join(FORMATS)}") from None


def known_stems(model: str) -> tuple[str, ...]:
    """The stems a published Demucs model gives, for when no worker has registered it yet."""
    if model == "htdemucs_6s":
        return SIX_STEMS
    if model.startswith(("htdemucs", "hdemucs", "mdx", "demucs", "repro_mdx")):
        return FOUR_STEMS
    return ()


@dataclass(frozen=True)
class Track:
    """One track of a rendition: a stem, or with `without` the sum of every other stem."""

    stem: str
    ext: str
    without: bool = False

    @property
    def name(self) -> str:
        return f"{NOT if self.without else ''}{self.stem}.{self.ext}"

    @property
    def mime(self) -> str:
        return audio_format(self.ext).mime


def track_name(stem: str, ext: str) -> str:
    """`vocals`, `flac` -> `vocals.flac`."""
    return Track(stem, ext).name


def parse_track(name: str, default_ext: str = "mp3") -> Track:
    """`vocals.flac`, `no_vocals.mp3`, `base.mp3`, `bass` (the default extension) -> a Track.

    The stem is not checked against a model here; the caller knows which model it asks for.
    """
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, default_ext
    audio_format(ext)
    without = stem.startswith(NOT)
    stem = ALIASES.get(stem.removeprefix(NOT), stem.removeprefix(NOT))
    if not stem.isidentifier() or stem.startswith("_"):
        raise TrackError(f"track {name!r} must be <stem>.<ext> or no_<stem>.<ext>")
    return Track(stem, ext, without)


@dataclass(frozen=True)
class Rendition:
    """A set of tracks in one format and quality, every stem or one stem and the rest."""

    format: str
    quality: int
    two_stems: str = ""  # the stem kept apart; empty: every stem on its own

    @property
    def id(self) -> str:
        suffix = f"+{self.two_stems}" if self.two_stems else ""
        return f"{self.format}-{self.quality}{suffix}"

    @property
    def ext(self) -> str:
        return audio_format(self.format).ext

    @property
    def quality_param(self) -> str:
        """The option (and query parameter) naming its quality: `bitrate` or `bits`."""
        return audio_format(self.format).unit

    def tracks(self, stems: tuple[str, ...] | list[str]) -> list[Track]:
        """The tracks this rendition makes of a model's `stems`, in the model's order."""
        if not self.two_stems:
            return [Track(stem, self.ext) for stem in stems]
        return [Track(self.two_stems, self.ext), Track(self.two_stems, self.ext, without=True)]

    def track_names(self, stems: tuple[str, ...] | list[str]) -> list[str]:
        """The file names of `tracks(stems)`."""
        return [track.name for track in self.tracks(stems)]

    def check(self, stems: tuple[str, ...] | list[str]) -> Rendition:
        """This rendition, if a model with `stems` can make it; TrackError otherwise."""
        if self.two_stems and self.two_stems not in stems:
            raise TrackError(f"the model has no stem {self.two_stems!r}; choose one of "
                             f"{', '.join(stems)}")
        return self


def rendition(format_name: str = "mp3", quality: int | None = None, two_stems: str = "",
              default_bitrate: int = 320) -> Rendition:
    """The rendition of these options, checked; quality defaults per format (mp3: MP3_BITRATE)."""
    fmt = audio_format(format_name)
    if quality is None:
        quality = default_bitrate if fmt.name == "mp3" else fmt.default_quality
    if quality not in fmt.qualities:
        raise TrackError(f"{fmt.unit} {quality} is not offered for {fmt.name}; choose one of "
                         f"{', '.join(map(str, fmt.qualities))}")
    if two_stems and (two_stems.startswith(NOT) or not two_stems.isidentifier()):
        raise TrackError(f"two_stems must be a stem name such as vocals, not {two_stems!r}")
    return Rendition(fmt.name, quality, ALIASES.get(two_stems, two_stems))


def parse_rendition(text: str) -> Rendition:
    """`mp3-320+vocals` -> Rendition('mp3', 320, 'vocals'); TrackError if malformed."""
    body, _, two_stems = text.partition("+")
    format_name, dash, quality = body.partition("-")
    if not dash or not quality.isdigit():
        raise TrackError(f"rendition {text!r} must be <format>-<quality>[+<stem>], "
                         "such as mp3-320 or wav-16+vocals")
    return rendition(format_name, int(quality), two_stems)


def default_rendition(mp3_bitrate: int) -> Rendition:
    """Every stem as mp3 at MP3_BITRATE: what the original API serves."""
    return Rendition("mp3", mp3_bitrate)


def lossless_track(stem: str) -> str:
    """The file name of a stem as the separation worker stores it: `vocals.flac`."""
    return track_name(stem, LOSSLESS)
