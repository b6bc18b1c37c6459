"""Ensembles: a pseudo-model `ensemble-<16 hex>` whose stems are made from the stored stems of
several served models (its members), by averaging them, by keeping per spectrogram bin the
loudest or quietest (max_spec, min_spec: UVR's ensembling), or by picking each stem's model.

The spec is written once under its name and never changed. A song's ensemble is a separation
record `H:<ensemble>` waiting for the render job `H:<ensemble>:stems`, which waits in a set of
the song until every member's separation has finished, then goes to `toRender`; after it,
every rendition of the ensemble is an ordinary render job. No Flask, no torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "ensemble-"
COMBINING = ("avg", "max_spec", "min_spec")
ALGORITHMS = (*COMBINING, "pick")


class EnsembleError(ValueError):
    """A spec that cannot be made; the message says what to change."""


class StemsUnknown(EnsembleError):
    """A member whose stems no worker has registered yet (and Demucs does not publish)."""


@dataclass(frozen=True)
class Spec:
    """What an ensemble is: its algorithm, its members and the stems picked from one member."""

    algorithm: str
    members: list[str]
    picks: dict[str, str] = field(default_factory=dict)

    @property
    def canonical(self) -> str:
        """Sorted keys, no spaces: what the name is the hash of."""
        return json.dumps({"algorithm": self.algorithm, "members": self.members,
                           "picks": self.picks}, sort_keys=True, separators=(",", ":"))

    @property
    def name(self) -> str:
        """`ensemble-<first 16 hex digits of the sha256 of the canonical spec>`."""
        return PREFIX + hashlib.sha256(self.canonical.encode()).hexdigest()[:16]

    def sources(self, stem: str) -> list[str]:
        """The members a stem of the ensemble is made from."""
        return [self.picks[stem]] if stem in self.picks else list(self.members)


def _strings(value: object, what: str) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise EnsembleError(f"{what} must be a list of model names")
    return value


def parse(body: Mapping[str, Any]) -> Spec:
    """The spec a request asks for (`algorithm`, `members`, `picks`), checked for shape."""
    algorithm = body.get("algorithm") or ("pick" if body.get("picks") and not body.get(
        "members") else "avg")
    if algorithm not in ALGORITHMS:
        raise EnsembleError(f"unknown algorithm {algorithm!r}; one of {', '.join(ALGORITHMS)}")
    picks = body.get("picks") or {}
    if not isinstance(picks, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in picks.items()):
        raise EnsembleError("picks must be an object of stem -> member model, e.g. "
                            '{"vocals": "htdemucs_ft"}')
    members = _strings(body.get("members") or sorted(set(picks.values())), "members")
    if len(set(members)) != len(members):
        raise EnsembleError(f"members are named twice: {', '.join(members)}")
    if algorithm in COMBINING and len(members) < 2:
        raise EnsembleError(f"{algorithm} combines two or more members; name them in members")
    if algorithm == "pick" and not picks:
        raise EnsembleError("pick needs picks: the member each stem is taken from")
    stray = sorted(set(picks.values()) - set(members))
    if stray:
        raise EnsembleError(f"picks name models that are not members: {', '.join(stray)}")
    return Spec(algorithm, members, dict(sorted(picks.items())))


def stems_of(spec: Spec, served: list[str], stems: Callable[[str], list[str]]) -> list[str]:
    """The ensemble's stems, in its first member's order; EnsembleError naming what is wrong."""
    unknown = [m for m in spec.members if m not in served]
    if unknown:
        raise EnsembleError(f"unknown member {', '.join(unknown)}; this service offers "
                            f"{', '.join(served)}")
    of = {member: stems(member) for member in spec.members}
    unknown = [member for member, found in of.items() if not found]
    if unknown:
        raise StemsUnknown(f"the stems of {', '.join(unknown)} are not known yet: no worker of "
                           "it has started; retry once GET /apiv1/models shows it ready")
    for stem, member in spec.picks.items():
        if stem not in of[member]:
            raise EnsembleError(f"member {member} makes no {stem} stem; its stems are "
                                f"{', '.join(of[member])}")
    if spec.algorithm == "pick":
        order = [s for member in spec.members for s in of[member]]
        return sorted(spec.picks, key=order.index)
    first = of[spec.members[0]]
    differing = [m for m in spec.members if sorted(of[m]) != sorted(first)]
    if differing:
        listed = "; ".join(f"{m}: {', '.join(of[m])}" for m in spec.members)
        raise EnsembleError(f"{spec.algorithm} needs members with the same stems ({listed}); "
                            "use the pick algorithm to take stems from different models")
    return list(first)


def params(spec: Spec, stems: list[str]) -> dict[str, Any]:
    """The stems job's parameters: the spec and the ensemble's stems in order."""
    return {"algorithm": spec.algorithm, "members": spec.members, "picks": spec.picks,
            "stems": stems}


def from_params(raw: Mapping[str, Any]) -> tuple[Spec, list[str]]:
    """(spec, stems) of a stems job's parameters."""
    return Spec(raw["algorithm"], list(raw["members"]), dict(raw.get("picks") or {})), list(
        raw["stems"])
