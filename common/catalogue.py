"""The model catalogue (common/catalogue.toml): each known model's family, stems, published
quality and the files that make it, as the gateway lists it and the fetch command downloads it.

Read with the standard library only: both images use it, and neither needs a parser for it.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).with_name("catalogue.toml")
FAMILIES = ("demucs", "bs_roformer", "mel_band_roformer")


class CatalogueError(ValueError):
    """The catalogue file is missing, not TOML, or an entry lacks what it needs."""


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: fetched from `url`, or written from `text`."""

    name: str
    url: str = ""
    text: str | None = None
    sha256: str = ""
    sha256_prefix: str = ""

    @property
    def verifiable(self) -> bool:
        """Whether its whole content can be checked: a full SHA-256, or text given here."""
        return bool(self.sha256) or self.text is not None


@dataclass(frozen=True)
class Quality:
    """Published SDR per stem (dB) on one data set, and who published it."""

    dataset: str
    source: str
    sdr: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """As the API serves it."""
        return {"dataset": self.dataset, "source": self.source, "sdr": dict(self.sdr)}


@dataclass(frozen=True)
class Entry:
    """One catalogued model."""

    name: str
    family: str
    title: str
    stems: list[str]
    sample_rate: int
    chunk_s: float | None = None
    note: str = ""
    files: list[ModelFile] = field(default_factory=list)
    quality: list[Quality] = field(default_factory=list)


def _file(model: str, raw: dict[str, Any]) -> ModelFile:
    name = raw.get("name", "")
    if not name or "/" in name or name.startswith("."):
        raise CatalogueError(f"model {model}: a file needs a plain `name`, not {name!r}")
    if bool(raw.get("url")) == ("text" in raw):
        raise CatalogueError(f"model {model}: file {name} needs either `url` or `text`")
    sha256 = raw.get("sha256", "").lower()
    if sha256 and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
        raise CatalogueError(f"model {model}: file {name} has a sha256 that is not 64 hex digits")
    return ModelFile(name, raw.get("url", ""), raw.get("text"), sha256,
                     raw.get("sha256_prefix", "").lower())


def _entry(name: str, raw: dict[str, Any]) -> Entry:
    try:
        family = raw["family"]
        if family not in FAMILIES:
            raise CatalogueError(f"model {name}: family {family!r} is not one of "
                                 f"{', '.join(FAMILIES)}")
        quality = [Quality(q["dataset"], q["source"], {k: float(v) for k, v in q["sdr"].items()})
                   for q in raw.get("quality", [])]
        chunk = raw.get("chunk_s")
        return Entry(name, family, raw.get("title", ""), list(raw["stems"]),
                     int(raw["sample_rate"]), float(chunk) if chunk is not None else None,
                     raw.get("note", ""), [_file(name, f) for f in raw.get("files", [])], quality)
    except KeyError as missing:
        raise CatalogueError(f"model {name}: missing {missing}") from None


def load(path: Path | str | None = None) -> dict[str, Entry]:
    """Every entry of the catalogue file (the one in this package unless `path` is given)."""
    path = Path(path) if path else DEFAULT_PATH
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CatalogueError(f"cannot read the catalogue {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise CatalogueError(f"the catalogue {path} is not valid TOML: {error}") from None
    return {name: _entry(name, entry) for name, entry in raw.get("models", {}).items()}


@functools.cache
def shipped() -> dict[str, Entry]:
    """The catalogue in this package, read once per process."""
    return load()
