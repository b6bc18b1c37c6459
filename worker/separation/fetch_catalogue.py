"""The `download` and `list` commands of fetch_model: a catalogued model's files into the
models folder, a rich bar on a terminal, plain lines (every tenth of a file) otherwise. No torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from common import catalogue
from common.catalogue import Entry, ModelFile
from common.settings import Settings, SettingsError
from worker.separation.download import DownloadError, download, sha256_of, write_text


def _in_place(spec: ModelFile, path: Path) -> bool:
    """Whether `path` already holds this file whole (by content when that can be checked)."""
    if not path.is_file():
        return False
    if spec.text is not None:
        return path.read_text(encoding="utf-8") == spec.text
    if spec.sha256 or spec.sha256_prefix:
        actual = sha256_of(path)
        return actual.startswith(spec.sha256 or spec.sha256_prefix)
    return True  # nothing to check it by; it was renamed into place only when whole


class _Lines:
    """Plain progress lines: one at each tenth of a file."""

    def __init__(self, label: str):
        self.label = label
        self.said = -1

    def __call__(self, done: int, total: int | None) -> None:
        if not total:
            return
        tenth = 10 * done // total
        if tenth != self.said:
            self.said = tenth
            print(f"fetch_model: {self.label} {tenth * 10}% ({done / 1e6:.1f} of "
                  f"{total / 1e6:.1f} MB)", flush=True)


def _fetch_one(spec: ModelFile, path: Path, label: str) -> None:
    if not sys.stdout.isatty():
        download(spec.url, path, sha256=spec.sha256, prefix=spec.sha256_prefix,
                 progress=_Lines(label))
        return
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(label, total=None)
        download(spec.url, path, sha256=spec.sha256, prefix=spec.sha256_prefix,
                 progress=lambda done, total: bar.update(task, completed=done, total=total))


def fetch_files(entry: Entry, folder: Path) -> bool:
    """Put every file of `entry` into `folder`, in catalogue order; whether any was written."""
    wrote = False
    for spec in entry.files:
        path = folder / spec.name
        if _in_place(spec, path):
            continue
        if spec.text is not None:
            write_text(spec.text, path)
        else:
            _fetch_one(spec, path, f"{entry.name}: {spec.name}")
        wrote = True
    return wrote



def download_model(entry: catalogue.Entry, folder: Path, verify: bool) -> str:
    """Fetch every file of a catalogued model that is not in `folder` whole; a summary line."""
    unverifiable = [f.name for f in entry.files if not f.verifiable]
    if verify and unverifiable:
        raise DownloadError(f"{entry.name}: the catalogue has no sha256 for "
                            f"{', '.join(unverifiable)}, so it cannot be checked; pass "
                            "--no-verify to fetch it unchecked, or add its sha256 to the "
                            "catalogue")
    fetched = fetch_files(entry, folder)
    where = ", ".join(f.name for f in entry.files)
    return (f"{entry.name}: {'fetched' if fetched else 'already present'} in {folder} ({where})")


def _models_dir(option: str | None, settings: Settings) -> Path:
    folder = option or getattr(settings, "models_dir", "") or settings.demucs_repo
    if not folder:
        raise DownloadError("no models folder: pass --models-dir DIR or set MODELS_DIR")
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_download(args: argparse.Namespace) -> int:
    """The `download` command."""
    try:
        settings = Settings.from_env()
        entries = catalogue.load(args.catalogue)
        names = args.names or [m for m in settings.demucs_models if m in entries]
        unknown = [name for name in names if name not in entries]
        if unknown:
            raise DownloadError(f"not in the catalogue: {', '.join(unknown)} (known: "
                                f"{', '.join(entries)}); put your own N.yaml + N.ckpt in the "
                                "models folder instead")
        folder = _models_dir(args.models_dir, settings)
        if not args.names:  # the served models: the others are the operator's own files
            for other in (m for m in settings.demucs_models if m not in entries):
                print(f"fetch_model: {other}: not in the catalogue, not fetched (its files "
                      "are yours to put in the models folder)", flush=True)
        for name in names:
            print(f"fetch_model: {download_model(entries[name], folder, not args.no_verify)}",
                  flush=True)
    except (DownloadError, catalogue.CatalogueError, SettingsError, OSError) as error:
        print(f"fetch_model: {error}", file=sys.stderr)
        return 1
    return 0


def run_list(args: argparse.Namespace) -> int:
    """The `list` command: one line per catalogued model."""
    try:
        entries = catalogue.load(args.catalogue)
    except catalogue.CatalogueError as error:
        print(f"fetch_model: {error}", file=sys.stderr)
        return 1
    for entry in entries.values():
        checked = "checked" if all(f.verifiable for f in entry.files) else "needs --no-verify"
        print(f"{entry.name}\t{entry.family}\t{','.join(entry.stems)}\t{checked}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the parsed `download` or `list` command; return the exit code."""
    return run_download(args) if args.command == "download" else run_list(args)
