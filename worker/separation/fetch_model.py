"""Getting model weights: download catalogued models into the models folder, or load one.

    python -m worker.separation.fetch_model download [NAME ...] [--models-dir DIR] [--no-verify]
    python -m worker.separation.fetch_model list
    python -m worker.separation.fetch_model                 # load DEMUCS_MODEL (image build)

`download` writes each model's files (common/catalogue.toml) into the models folder, imports
no torch, and is what a Kubernetes init container runs. Without arguments the command loads
the configured model once with the worker's own loader, so its files land in the caches
(HF_HOME, TORCH_HOME). Either way it prints one line per result and exits 0, or prints one
line naming the problem and exits 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import sys

from common.settings import Settings
from worker.runtime.errors import ModelLoadError


def fetch(name: str, repo: str) -> str:
    """Load model `name` (from folder `repo` when given) and return a one-line summary."""
    from worker.separation.model import load_model  # imports torch: keep it out of module import

    model = load_model(name, repo)
    return f"{name}: {', '.join(model.sources)} at {model.samplerate} Hz"


def load_configured() -> int:
    """Load the configured model (DEMUCS_MODEL from DEMUCS_REPO or the hub's cache)."""
    try:
        settings = Settings.from_env()
        summary = fetch(settings.demucs_model, settings.demucs_repo)
    except ModelLoadError as error:  # names the model, where it was looked for, what to set
        print(f"fetch_model: {error}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bad setting
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        print(f"fetch_model: cannot load Demucs model: {reason}", file=sys.stderr)
        return 1
    print(f"fetch_model: loaded {summary}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker.separation.fetch_model",
        description="Download catalogued model weights into the models folder (no torch), "
                    "or, without a command, load DEMUCS_MODEL once to fill the caches.",
        epilog="Exit status: 0 every model is in place, 1 one could not be fetched (the line "
               "says why; a broken download resumes when run again), 2 usage error.")
    commands = parser.add_subparsers(dest="command")
    fetch_cmd = commands.add_parser(
        "download", help="download models into the models folder",
        description="Write each model's files (N.yaml + N.ckpt for RoFormer models, the .th "
                    "files and N.yaml for Demucs) into the models folder, each checked against "
                    "the catalogue's sha256 and renamed into place only when whole.")
    fetch_cmd.add_argument("names", nargs="*", metavar="NAME",
                           help="catalogued model names (default: those of DEMUCS_MODELS "
                                "the catalogue has)")
    fetch_cmd.add_argument("--models-dir", metavar="DIR",
                           help="where to write (default: MODELS_DIR, else DEMUCS_REPO)")
    fetch_cmd.add_argument("--no-verify", action="store_true",
                           help="fetch files whose full sha256 the catalogue lacks, unchecked "
                                "(a published hash prefix is still checked)")
    fetch_cmd.add_argument("--catalogue", metavar="FILE", help=argparse.SUPPRESS)
    list_cmd = commands.add_parser("list", help="the catalogued models and their files")
    list_cmd.add_argument("--catalogue", metavar="FILE", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = _parser().parse_args(argv)
    if args.command is None:
        return load_configured()
    # Imported here: the image's model layer runs the load above with only its own files.
    from worker.separation import fetch_catalogue

    return fetch_catalogue.run(args)


if __name__ == "__main__":
    sys.exit(main())
