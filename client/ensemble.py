"""`micro-demucs ensemble SONG --members a,b [--algorithm avg|max_spec|min_spec|pick]
[--pick STEM=MODEL]`: one set of stems made from several models', followed and saved as
`wait` saves a song's (DIR/<hash>/)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from client import songs
from client.api import Api, ApiError, transient

ALGORITHMS = ("avg", "max_spec", "min_spec", "pick")
_HASH = re.compile(r"[0-9a-f]{64}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """SONG and the ensemble's options."""
    parser.add_argument("song", metavar="SONG",
                        help="an audio file (uploaded first) or the hash of a song on the server")
    parser.add_argument("--members", metavar="A,B", default="",
                        help="the models whose stems are ensembled, comma-separated")
    parser.add_argument("--algorithm", choices=ALGORITHMS,
                        help="avg (default), max_spec, min_spec (per spectrogram bin), or pick")
    parser.add_argument("--pick", action="append", default=[], metavar="STEM=MODEL",
                        help="take STEM from MODEL alone (repeat; with --algorithm pick, every "
                             "stem of the result)")
    group = parser.add_argument_group("track options")
    group.add_argument("--format", choices=["mp3", "wav", "flac"], help="default mp3")
    group.add_argument("--bits", type=int, choices=[16, 24], help="wav/flac sample bits")
    group.add_argument("--bitrate", type=int, metavar="KBPS", help="mp3 bitrate")


def _usage(message: str) -> SystemExit:
    """A usage error: said on stderr, exit status 2 (as argparse's)."""
    print(f"micro-demucs ensemble: {message}", file=sys.stderr)
    return SystemExit(2)


def spec_of(args: argparse.Namespace) -> dict[str, Any]:
    """The request body: algorithm, members and picks as the command line gives them."""
    picks = {}
    for pick in args.pick:
        stem, equals, model = pick.partition("=")
        if not (stem and equals and model):
            raise _usage(f"--pick takes STEM=MODEL, not {pick!r}")
        picks[stem] = model
    members = [m.strip() for m in args.members.split(",") if m.strip()]
    spec: dict[str, Any] = {"members": members or sorted(set(picks.values())), "picks": picks}
    if args.algorithm:
        spec["algorithm"] = args.algorithm
    return spec


def _song_hash(api: Api, song: str, first_member: str) -> str:
    """The hash of SONG: given, or the answer to uploading the file (for its first member)."""
    if _HASH.fullmatch(song):
        return song
    path = Path(song)
    if not path.is_file():
        raise _usage(f"{song} is neither a file nor a song hash")
    options = {"model": first_member} if first_member else {}
    return str(api.submit(path, options, lambda sent, total: None)["hash"])


def _ask(api: Api, song_hash: str, spec: dict[str, Any]) -> dict[str, Any]:
    """POST the ensemble, waiting out a 503 (a member's worker starting) as the server says."""
    for _ in range(songs.RETRIES):
        try:
            return api.ensemble(song_hash, spec)
        except ApiError as error:
            if not transient(error):
                raise
            api.wait(error.retry_after)
    return api.ensemble(song_hash, spec)


def ensemble(api: Api, args: argparse.Namespace) -> int:
    """Ask for the ensemble, then follow it and save its tracks; `wait`'s exit status."""
    spec = spec_of(args)
    song_hash = _song_hash(api, args.song, (spec["members"] or [""])[0])
    answer = _ask(api, song_hash, spec)
    if not args.json:
        print(f"{song_hash[:12]}: ensemble {answer['model']} ({answer['algorithm']} of "
              f"{', '.join(answer['members'])}): {', '.join(answer['stems'])}", file=sys.stderr)
    args.options = {**args.options, "model": answer["model"]}
    args.hashes = [song_hash]
    return songs.wait(api, args)
