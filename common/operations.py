"""Render operations: what a render job `H:<model>:<op>` makes from a song's lossless stems.

`<op>` is a rendition id (`mp3-320`, `flac-24+vocals`: its tracks) or an operation id:
`peaks` (waveform peaks), `analysis` (tempo, key, loudness), `seekindex` (where each stem's
FLAC frames start, for the page's playback by byte range), `mix-<16 hex>` (one mixdown, its
parameters in the job record's `params`) or `stems` (an ensemble's lossless stems). A
parametrised operation's hex is the start of the sha256 of its canonical parameters, so the
same request finds the same job and its stored result. No torch, no Flask: both sides import it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from common import tracks

RENDITION = "rendition"
PEAKS = "peaks"
ANALYSIS = "analysis"
MIX = "mix"
STEMS = "stems"
SEEKINDEX = "seekindex"
PLAIN = (PEAKS, ANALYSIS, STEMS, SEEKINDEX)  # operations whose id is their kind
# Made for every song's stems as they are stored (the separation's hand-off, an ensemble's
# stems job), so a song opened for the first time finds them ready.
STUDIO = (PEAKS, ANALYSIS, SEEKINDEX)
PARAMETRISED = (MIX,)  # operations whose id is `<kind>-<16 hex of their params>`
KINDS = (RENDITION, *PLAIN, *PARAMETRISED)
_HEX = re.compile(r"[0-9a-f]{16}")


class OperationError(ValueError):
    """An operation id that does not parse; the message says what one looks like."""


@dataclass(frozen=True)
class Operation:
    """A parsed operation id: its kind, and for a rendition the Rendition itself."""

    id: str
    kind: str
    rendition: tracks.Rendition | None = None


def canonical_params(params: dict[str, Any]) -> str:
    """The parameters as canonical JSON: sorted keys, no spaces (stored and hashed as such)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def operation_id(kind: str, params: dict[str, Any] | None = None) -> str:
    """The id of an operation: its kind, or `<kind>-<16 hex>` for a parametrised one."""
    if kind in PLAIN:
        return kind
    if kind in PARAMETRISED:
        digest = hashlib.sha256(canonical_params(params or {}).encode()).hexdigest()
        return f"{kind}-{digest[:16]}"
    raise OperationError(f"unknown operation kind {kind!r}; one of {', '.join(KINDS)}")


def parse_operation(op: str) -> Operation:
    """`peaks`, `mix-0123456789abcdef`, `mp3-320+vocals` -> an Operation; OperationError if
    it is none of them."""
    if op in PLAIN:
        return Operation(op, op)
    kind, dash, digest = op.partition("-")
    if kind in PARAMETRISED:
        if not dash or not _HEX.fullmatch(digest):
            raise OperationError(f"operation {op!r} must be {kind}-<16 hex digits>")
        return Operation(op, kind)
    try:
        return Operation(op, RENDITION, tracks.parse_rendition(op))
    except tracks.TrackError as error:
        raise OperationError(f"operation {op!r} is neither {', '.join(PLAIN)}, "
                             f"{'-<hex>, '.join(PARAMETRISED)}-<hex> nor a rendition: "
                             f"{error}") from None
