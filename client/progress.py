"""What the user sees while songs go through: a live bar per song on a terminal (rich), plain
lines otherwise (a log file, a pipe, CI), nothing with --json (the result is the output)."""

from __future__ import annotations

import sys
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn


class Display(Protocol):
    """One row per song: its phase (uploading, queued, separating, downloading) and amount."""

    def add(self, name: str) -> int: ...
    def update(self, row: int, phase: str, done: float, total: float, detail: str = "") -> None: ...
    def say(self, row: int, message: str) -> None: ...
    def __enter__(self) -> Display: ...
    def __exit__(self, *exc: object) -> None: ...


class Bars:
    """Live bars on a terminal; `say` prints a line above them."""

    def __init__(self) -> None:
        self.progress = Progress(
            # Names and messages are shown as they are, never read as rich markup.
            TextColumn("{task.fields[name]}", style="bold", markup=False),
            BarColumn(bar_width=30),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[phase]} {task.fields[detail]}", markup=False),
            console=Console(), transient=False)
        self.names: dict[int, str] = {}

    def add(self, name: str) -> int:
        row = self.progress.add_task(name, name=name, phase="waiting", detail="", total=1)
        self.names[row] = name
        return row

    def update(self, row: int, phase: str, done: float, total: float, detail: str = "") -> None:
        self.progress.update(TaskID(row), completed=done, total=total or 1, phase=phase,
                             detail=detail)

    def say(self, row: int, message: str) -> None:
        self.progress.console.print(f"{self.names[row]}: {message}", markup=False,
                                    highlight=False)

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


class Lines:
    """Plain lines: one when a song changes phase, and every tenth of the separation."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.names: dict[int, str] = {}
        self.last: dict[int, str] = {}

    def add(self, name: str) -> int:
        self.names[len(self.names)] = name
        return len(self.names) - 1

    def update(self, row: int, phase: str, done: float, total: float, detail: str = "") -> None:
        if phase in ("done", "failed", "cancelled"):
            return  # said in words by `say`
        line = phase
        if phase == "separating" and total:
            line += f" {int(10 * done / total) * 10}%"
        elif phase in ("queued", "waiting") and detail:
            line += f" {detail}"
        if self.last.get(row) != line:
            self.last[row] = line
            self._print(f"{self.names[row]}: {line}")

    def say(self, row: int, message: str) -> None:
        self._print(f"{self.names[row]}: {message}")

    def _print(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def display(json_output: bool) -> Display:
    """Bars on a terminal, lines elsewhere, silence when the output is JSON."""
    if json_output:
        return Lines(quiet=True)
    return Bars() if sys.stdout.isatty() else Lines()
