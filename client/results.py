"""`status`, `queue`, `download`, `remove` and `cancel`: one request each, answered in words or,
with --json, with the API's own JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from client.api import Api
from client.progress import display
from client.songs import Song, place, save_tracks
from client.tracks import status_params


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def status(api: Api, args: argparse.Namespace) -> int:
    """Print a song's status; 0 whatever the status (the exit code says the request worked)."""
    state = api.status(args.hash, status_params(args.options))
    if args.json:
        _print_json(state)
        return 0
    line = state["status"]
    if state.get("position"):
        line += f" {place(state)}"
    if state["status"] == "processing":
        line += f" {float(state.get('progress') or 0):.0%}"
    print(f"{state['hash']}: {line}")
    if state.get("error"):
        print(f"  error: {state['error']}")
    if state.get("tracks"):
        print(f"  tracks: {', '.join(state['tracks'])}")
    options = {name: value for name, value in (state.get("options") or {}).items()
               if value is not None}
    if options:
        print("  options: " + " ".join(f"{name}={value}" for name, value in options.items()))
    return 0


def queue(api: Api, args: argparse.Namespace) -> int:
    """Print the hashes waiting in a model's queue, oldest first (with a server's API keys,
    those of this key's songs), and how many songs wait in all."""
    answer = api.queue(status_params(args.options))
    hashes = [str(song_hash) for song_hash in answer.get("queue") or []]
    waiting = int(answer.get("length", len(hashes)))
    if args.json:
        _print_json({"queue": hashes, "length": waiting,
                     "in_flight": int(answer.get("in_flight", 0))})
    elif not waiting:
        print("the queue is empty")
    else:
        for place, song_hash in enumerate(hashes, 1):
            print(f"{place:>4}  {song_hash}")
        if waiting > len(hashes):
            print(f"{waiting} waiting in all, {waiting - len(hashes)} of them other keys' songs")
    return 0


def download(api: Api, args: argparse.Namespace) -> int:
    """Save a separated song's tracks under DIR/<hash>/; 1 when it is not separated."""
    state = api.status(args.hash, status_params(args.options))
    song = Song.by_hash(args.hash, Path(args.output))
    if state["status"] != "done":
        message = (f"song {args.hash} is not separated (status {state['status']}"
                   + (f": {state['error']}" if state.get("error") else "") + ")")
        if state["status"] in ("queued", "processing"):
            message += f"; to wait for it: micro-demucs wait {args.hash}"
        raise SystemExit(f"micro-demucs: {message}")
    with display(args.json) as shown:
        song.row = shown.add(song.name)
        save_tracks(api, song, state, args.options, shown)
    if args.json:
        _print_json(song.result())
    return 0 if song.status == "done" else 1


def remove(api: Api, args: argparse.Namespace) -> int:
    """Remove one track, or with no track named, the whole song."""
    if args.track:
        answer = api.remove(args.hash, args.track, status_params(args.options))
    else:
        answer = api.delete(args.hash)
    if args.json:
        _print_json(answer)
    else:
        print(answer.get("reason") or "removed")
    return 0


def cancel(api: Api, args: argparse.Namespace) -> int:
    """Stop a queued or running song."""
    answer = api.cancel(args.hash, status_params(args.options))
    if args.json:
        _print_json(answer)
    else:
        print(answer.get("reason") or "cancelled")
    return 0
