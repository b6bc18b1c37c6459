"""`micro-demucs models`: the models a server offers, as a table (or, with --json, the API's
own answer): family, stems, readiness, published quality and the speed measured there."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from client.api import Api

COLUMNS = ("model", "family", "stems", "ready", "params", "chunk", "quality (SDR dB)",
           "speed (s per s of audio)")


def _quality(model: dict[str, Any]) -> str:
    """The first published figures and where they come from; `-` when none is known."""
    for quality in model.get("quality") or []:
        figures = " ".join(f"{stem} {sdr:.2f}" for stem, sdr in quality["sdr"].items())
        return f"{figures} ({quality['dataset']})"
    return "-"


def _speed(model: dict[str, Any]) -> str:
    """Recent real-time factor per device, with the jobs it is measured on."""
    return "; ".join(f"{device} {figures['rtf_recent']:.3g} ({figures['jobs']} jobs)"
                     for device, figures in (model.get("speed") or {}).items()
                     if figures.get("rtf_recent") is not None) or "-"


def _params(count: int | None) -> str:
    return f"{count / 1e6:.1f} M" if count else "-"


def row(model: dict[str, Any]) -> list[str]:
    """One model's cells, in COLUMNS order."""
    ready = f"yes ({model.get('workers', 0)})" if model.get("ready") else "no"
    chunk = f"{model['chunk_s']:g} s" if model.get("chunk_s") else "-"
    name = model["name"] + (" (default)" if model.get("default") else "")
    return [name, model.get("family") or "-", ",".join(model.get("stems") or []) or "-",
            ready, _params(model.get("parameters")), chunk, _quality(model), _speed(model)]


def models(api: Api, args: argparse.Namespace) -> int:
    """Print the server's models; 0 when it answered."""
    offered = api.models()
    if args.json:
        print(json.dumps({"models": offered}, indent=2))
        return 0
    table = Table(*COLUMNS, box=None, pad_edge=False)
    for model in offered:
        table.add_row(*(Text(cell) for cell in row(model)))  # names are never markup
    # On a pipe, one line per model however long: scripts read it whole.
    console = Console(highlight=False) if sys.stdout.isatty() else Console(
        width=400, highlight=False, no_color=True)
    console.print(table)
    return 0
