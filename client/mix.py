"""`mix`: one mixdown of a separated song, made by the server and saved: karaoke (`--mute
vocals`), practice tracks (`--gain drums=-6 --solo bass`), a loop (`--from 10 --to 20`).

POST /apiv1/mix/<hash> queues it; the file is fetched from the URL the answer gives, asking
again while the server answers 202.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from client.api import MAX_ANSWER_BYTES, Api, GaveUp, _save, _seconds
from client.progress import display
from client.tracks import UnsafeName, song_hash


def add_arguments(sub: argparse.ArgumentParser) -> None:
    """The `mix` command's arguments."""
    sub.add_argument("song", metavar="SONG", help="the song's hash, or the file you separated")
    sub.add_argument("--model", help="Demucs model (default: the server's)")
    sub.add_argument("--mute", action="append", default=[], metavar="STEM",
                     help="leave STEM out (repeat for more)")
    sub.add_argument("--solo", action="append", default=[], metavar="STEM",
                     help="only the soloed stems sound (repeat for more)")
    sub.add_argument("--gain", action="append", default=[], metavar="STEM=DB",
                     help="a stem's gain in dB, e.g. drums=-3 (repeat for more)")
    sub.add_argument("--from", dest="start", type=float, metavar="SECONDS",
                     help="start of the region to mix")
    sub.add_argument("--to", dest="end", type=float, metavar="SECONDS",
                     help="end of the region to mix")
    sub.add_argument("--format", choices=["wav", "flac", "mp3"], default="wav")
    sub.add_argument("--bits", type=int, choices=[16, 24], help="wav/flac sample bits")
    sub.add_argument("--bitrate", type=int, metavar="KBPS", help="mp3 bitrate")
    sub.add_argument("-o", "--output", default=".", metavar="DIR",
                     help="the mix goes to DIR/<song>-mix-<id>.<format> (default .)")


def _gains(values: list[str]) -> dict[str, float]:
    gains = {}
    for value in values:
        stem, equals, db = value.partition("=")
        try:
            gains[stem] = float(db)
        except ValueError:
            equals = ""
        if not equals or not stem:
            raise SystemExit(f"micro-demucs: --gain {value!r} must be STEM=DB, e.g. drums=-3")
    return gains


def _song(value: str) -> tuple[str, str]:
    """(hash, name for the file): a hash as it is, a file by the SHA-256 of its bytes."""
    path = Path(value)
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as song:
            while chunk := song.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest(), path.stem
    try:
        return song_hash(value), value
    except UnsafeName:
        raise SystemExit(f"micro-demucs: {value}: neither a file nor a song hash") from None


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON the mix route takes, from the command line."""
    body = {"model": args.model, "mute": args.mute, "solo": args.solo,
            "gains": _gains(args.gain), "start": args.start, "end": args.end,
            "format": args.format, "bits": args.bits, "bitrate": args.bitrate}
    return {name: value for name, value in body.items() if value not in (None, [], {})}


def mix(api: Api, args: argparse.Namespace) -> int:
    """Ask for the mix, wait while it is made, save it; its path (or --json) printed."""
    song, name = _song(args.song)
    answer = api._json("POST", f"/apiv1/mix/{song}", json=request_body(args))
    operation = str(answer["operation"])
    if not operation.startswith("mix-") or not operation[4:].isalnum():
        raise UnsafeName(f"the server named the mix {operation[:80]!r}")
    target = Path(args.output) / f"{name}-{operation}.{args.format}"
    with display(args.json) as shown:
        row = shown.add(target.name)
        while True:
            with api._request("GET", str(answer["url"])) as response:
                if response.status_code == 202:
                    api._body(response, MAX_ANSWER_BYTES, "answer")
                    shown.update(row, "mixing", 0, 1)
                    api.wait(_seconds(response.headers.get("Retry-After", "")))
                    continue
                total = int(response.headers.get("Content-Length") or 0)
                if total > api.max_track_bytes:
                    raise GaveUp(f"the mix is {total} bytes, more than --max-track-mb allows")
                _save(api._chunks(response, api.max_track_bytes, "mix"), target, total,
                      lambda done, whole: shown.update(row, "downloading", done, whole))
                break
    if args.json:
        print(json.dumps({**answer, "file": str(target)}, indent=2))
    else:
        print(target)
    return 0
