"""`micro-demucs`: separate songs on a Micro Demucs server from the command line.

Exit status: 0 when everything asked for is done, 1 when a song failed or the server refused
(its message is printed), 2 for a usage error, 130 after Ctrl-C (the jobs keep running).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from client import ensemble, mix, models, results, songs
from client.api import (
    DEFAULT_MAX_TRACK_MB,
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    Api,
    ApiError,
    Unreachable,
    error_line,
)
from client.tracks import UnsafeName, job_options, song_hash

Command = Callable[[Api, argparse.Namespace], int]


def _connection(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--server and --api-key, accepted before and after the command."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--server", default=default, metavar="URL",
                        help=f"the server (env MICRO_DEMUCS_URL; default {DEFAULT_URL})")
    parser.add_argument("--api-key", default=default, metavar="KEY",
                        help="API key sent as a Bearer token (env MICRO_DEMUCS_API_KEY)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        default=argparse.SUPPRESS if suppress else DEFAULT_TIMEOUT_S,
                        help="give up after this long, whatever the server says; the server "
                             f"keeps the songs (default {DEFAULT_TIMEOUT_S} s; 0: never)")
    parser.add_argument("--max-track-mb", type=int, metavar="MB",
                        default=argparse.SUPPRESS if suppress else DEFAULT_MAX_TRACK_MB,
                        help=f"refuse a track larger than this (default {DEFAULT_MAX_TRACK_MB})")


def _job_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("job options")
    group.add_argument("--model", help="Demucs model (default: the server's first)")
    group.add_argument("--two-stems", metavar="STEM",
                       help="STEM and no_STEM (the sum of the others), e.g. vocals for karaoke")
    group.add_argument("--format", choices=["mp3", "wav", "flac"], help="default mp3")
    group.add_argument("--bits", type=int, choices=[16, 24], help="wav/flac sample bits")
    group.add_argument("--bitrate", type=int, metavar="KBPS", help="mp3 bitrate")


def _output(parser: argparse.ArgumentParser, where: str) -> None:
    parser.add_argument("-o", "--output", default=songs.DEFAULT_OUTPUT, metavar="DIR",
                        help=f"tracks go to DIR/{where}/ (default {songs.DEFAULT_OUTPUT})")


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def parser() -> argparse.ArgumentParser:
    """The whole command line."""
    main = argparse.ArgumentParser(prog="micro-demucs", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection(main, suppress=False)
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        _connection(sub, suppress=True)
        _json(sub)
        return sub

    sub = command("separate", songs.separate, "upload songs, show progress, save their stems")
    sub.add_argument("songs", nargs="+", metavar="SONG", help="audio files")
    _output(sub, "<song name>")
    _job_options(sub)
    sub = command("wait", songs.wait, "wait for songs already submitted and save their stems")
    sub.add_argument("hashes", nargs="+", metavar="HASH")
    _output(sub, "<hash>")
    _job_options(sub)
    sub = command("status", results.status, "a song's status")
    sub.add_argument("hash")
    sub.add_argument("--model", help="a non-default model's result")
    sub = command("queue", results.queue, "the songs waiting, oldest first")
    sub.add_argument("--model", help="a non-default model's queue")
    sub = command("download", results.download, "save a separated song's tracks")
    sub.add_argument("hash")
    _output(sub, "<hash>")
    _job_options(sub)
    sub = command("remove", results.remove, "remove one track, or the whole song")
    sub.add_argument("hash")
    sub.add_argument("track", nargs="?", help="e.g. vocals.mp3; none: delete the song")
    sub.add_argument("--model", help="a non-default model's track")
    command("models", models.models, "the models the server offers: family, stems, quality, "
            "speed")
    sub = command("ensemble", ensemble.ensemble, "stems made from several models' (avg, "
                  "max_spec, min_spec, pick), saved as wait saves them")
    ensemble.add_arguments(sub)
    _output(sub, "<hash>")
    sub = command("mix", mix.mix, "save a mix of a separated song: mutes, solos, gains, region")
    mix.add_arguments(sub)
    sub = command("cancel", results.cancel, "stop a queued or running song")
    sub.add_argument("hash")
    sub.add_argument("--model", help="a non-default model's job")
    return main


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status as described above."""
    arguments = parser()
    args = arguments.parse_args(argv)
    args.server = args.server or os.environ.get("MICRO_DEMUCS_URL") or DEFAULT_URL
    args.api_key = args.api_key or os.environ.get("MICRO_DEMUCS_API_KEY", "")
    args.options = job_options(vars(args))
    for song in getattr(args, "songs", None) or []:
        if not Path(song).is_file():
            arguments.error(f"{song}: no such file")
    try:
        for value in getattr(args, "hashes", None) or [getattr(args, "hash", None)]:
            if value is not None:
                song_hash(value)
    except UnsafeName as error:
        arguments.error(str(error))
    if args.timeout < 0 or args.max_track_mb < 1:
        arguments.error("--timeout must be 0 or more, --max-track-mb 1 or more")
    api = Api(args.server, args.api_key, args.timeout, args.max_track_mb << 20)
    run: Callable[[Api, argparse.Namespace], int] = args.run  # set by each command's parser
    try:
        return run(api, args)
    except (ApiError, Unreachable) as error:
        print(f"micro-demucs: {error_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        api.close()
