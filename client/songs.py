"""`separate` and `wait`: upload songs, follow each to its end, save its tracks."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.api import DEFAULT_URL, Api, ApiError, Unreachable, error_line, transient
from client.progress import Display, display
from client.tracks import UnsafeName, download_params, song_hash, status_params, wanted_tracks

DEFAULT_OUTPUT = "separated"  # as the Demucs command line
# Answers that concern the song itself (bad file, too large, too long): the others still go.
SONG_FAULTS = (400, 413, 415, 422)
RETRIES = 5  # uploads answered 429 or 503 (rate limit, full queue, a store away)
FINAL = ("done", "failed", "cancelled")


@dataclass
class Song:
    """One song followed by this command: where it comes from and where its tracks go."""

    name: str
    folder: Path
    source: Path | None = None
    song_hash: str = ""
    status: str = "waiting"
    error: str = ""
    files: list[Path] = field(default_factory=list)
    row: int = 0

    @classmethod
    def by_hash(cls, song_hash: str, output: Path) -> Song:
        """A song known by its hash only: shown by its first digits, saved in DIR/<hash>/."""
        return cls(song_hash[:12], output / song_hash, song_hash=song_hash)

    def result(self) -> dict[str, Any]:
        """The song as `--json` prints it."""
        return {"song": self.name, "hash": self.song_hash or None, "status": self.status,
                "error": self.error or None, "files": [str(path) for path in self.files]}


def separate(api: Api, args: argparse.Namespace) -> int:
    """Upload each song, then follow them all; 0 when every song is done, 1 otherwise."""
    return _run(api, _songs_from_files(args.songs, Path(args.output)), args, upload=True)


def wait(api: Api, args: argparse.Namespace) -> int:
    """Follow songs already submitted, by hash; their tracks go to DIR/<hash>/."""
    songs = [Song.by_hash(song_hash, Path(args.output)) for song_hash in dict.fromkeys(args.hashes)]
    return _run(api, songs, args, upload=False)


def _run(api: Api, songs: list[Song], args: argparse.Namespace, upload: bool) -> int:
    try:
        with display(args.json) as shown:
            for song in songs:
                song.row = shown.add(song.name)
            if upload:
                for song in songs:
                    _upload(api, song, args.options, shown)
            _follow(api, [song for song in songs if song.song_hash], args.options, shown)
    except KeyboardInterrupt:
        _stopped(songs, args, "stopped waiting")
        return 130
    except (ApiError, Unreachable) as error:
        _stopped(songs, args, f"micro-demucs: {error_line(error)}")
        return 1
    return _report(songs, args.json)


def _songs_from_files(paths: list[str], output: Path) -> list[Song]:
    """A Song per file, each with a folder of its own even when two files share a name."""
    songs: list[Song] = []
    taken: set[str] = set()
    for raw in paths:
        path = Path(raw)
        name, number = path.stem, 1
        while name in taken:
            number += 1
            name = f"{path.stem}-{number}"
        taken.add(name)
        songs.append(Song(name, output / name, source=path))
    return songs


def _upload(api: Api, song: Song, options: dict[str, str], shown: Display) -> None:
    assert song.source is not None
    song.status = "uploading"

    def progress(sent: int, total: int) -> None:
        shown.update(song.row, "uploading", sent, total, f"{sent / 1e6:.1f}/{total / 1e6:.1f} MB")

    for _ in range(RETRIES):
        try:
            answer = api.submit(song.source, options, progress)
            break
        except ApiError as error:
            if error.status in SONG_FAULTS:
                _fail(song, "failed", error.message, shown)
                return
            if not transient(error):
                raise  # refused whatever the song (an API key, ...): the command stops
            shown.update(song.row, "waiting", 0, 1, error.message)
            api.wait(error.retry_after)
    else:
        _fail(song, "failed", "the server stayed busy; try again later", shown)
        return
    try:
        song.song_hash, song.status = song_hash(answer.get("hash")), "queued"
    except UnsafeName as error:
        _fail(song, "failed", str(error), shown)
        return
    shown.say(song.row, f"{answer['reason'].lower()} ({song.song_hash})")


def _follow(api: Api, songs: list[Song], options: dict[str, str], shown: Display) -> None:
    """Poll every unfinished song until each is done (and saved), failed or cancelled."""
    while pending := [song for song in songs if song.status not in FINAL]:
        for song in pending:
            try:
                _poll(api, song, options, shown)
            except ApiError as error:
                if not transient(error):
                    _fail(song, "failed", error.message, shown)
                    continue
                shown.update(song.row, "waiting", 0, 1, error.message)
        if any(song.status not in FINAL for song in songs):
            api.wait(None)


def place(state: dict[str, Any]) -> str:
    """A queued song's place in its model's queue, as the status tells it ("#2 of 5")."""
    return f"#{state['position']} of {state['queue_length']}" if state.get("position") else ""


def _poll(api: Api, song: Song, options: dict[str, str], shown: Display) -> None:
    state = api.status(song.song_hash, status_params(options))
    song.status = state["status"]
    if song.status == "queued":
        shown.update(song.row, "queued", 0, 1, place(state))
    elif song.status == "processing":
        progress = float(state.get("progress") or 0)
        # Separated, its tracks being encoded: the separation's share is over.
        shown.update(song.row, "separating" if progress < 1 else "encoding", progress, 1)
    elif song.status == "done":
        save_tracks(api, song, state, options, shown)
    elif song.status in FINAL:
        _fail(song, song.status, state.get("error") or f"the song was {song.status}", shown)
    else:
        shown.update(song.row, song.status, 0, 1)


def save_tracks(api: Api, song: Song, state: dict[str, Any], options: dict[str, str],
                shown: Display) -> None:
    """Download the song's tracks into its folder, each shown as it arrives; only plain track
    names are accepted from the server, and only files inside the folder are written."""
    try:
        tracks = wanted_tracks(state, options, lambda: api.stems(options.get("model")))
        targets = [inside(song.folder, track) for track in tracks]
    except UnsafeName as error:
        _fail(song, "failed", f"{error}; nothing was saved", shown)
        return
    if not tracks:
        _fail(song, "failed", f"the server lists no track to download (it has "
                              f"{', '.join(map(str, state.get('tracks') or [])) or 'none'})",
              shown)
        return
    song.status, song.files = "downloading", []
    for number, (track, target) in enumerate(zip(tracks, targets, strict=True), 1):
        def progress(done: int, total: int) -> None:
            shown.update(song.row, "downloading", done, total,
                         f"{track} ({number}/{len(tracks)})")  # noqa: B023 (used at once)

        song.files.append(api.download(song.song_hash, track, target,
                                       download_params(options), progress))
    song.status = "done"
    shown.update(song.row, "done", 1, 1)
    shown.say(song.row, f"done, {len(song.files)} tracks in {song.folder}/")


def inside(folder: Path, name: str) -> Path:
    """`folder/name`, once it is certain to lie directly in `folder` (links resolved)."""
    target = folder / name
    if target.resolve().parent != folder.resolve():
        raise UnsafeName(f"the track name {name!r} leads out of {folder}")
    return target


def _fail(song: Song, status: str, reason: str, shown: Display) -> None:
    song.status, song.error = status, reason
    shown.update(song.row, status, 0, 1)
    shown.say(song.row, f"{status}: {reason}")


def _stopped(songs: list[Song], args: argparse.Namespace, why: str) -> None:
    """The command stops before the end; the server keeps the jobs: say how to take them up."""
    print(why, file=sys.stderr)
    hashes = [song.song_hash for song in songs if song.song_hash and song.status not in FINAL]
    if hashes:
        print("the server goes on with the songs; take them up again with:\n  "
              + resume_command(hashes, args), file=sys.stderr)


def resume_command(hashes: list[str], args: argparse.Namespace) -> str:
    """The `micro-demucs wait` line that takes up these songs with the same options."""
    words = ["micro-demucs", "wait", *hashes]
    if args.server != DEFAULT_URL:
        words += ["--server", args.server]
    if args.output != DEFAULT_OUTPUT:
        words += ["-o", args.output]
    for option, value in args.options.items():
        words += [f"--{option.replace('_', '-')}", value]
    return shlex.join(words)


def _report(songs: list[Song], json_output: bool) -> int:
    if json_output:
        print(json.dumps([song.result() for song in songs], indent=2))
    return 0 if all(song.status == "done" for song in songs) else 1
