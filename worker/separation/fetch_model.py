"""Download the Demucs model named by DEMUCS_MODEL / DEMUCS_REPO into the caches, at image build.

`python -m worker.separation.fetch_model` loads the model once with the worker's own loader, so
its files land in the Hugging Face cache under HF_HOME (or TORCH_HOME for legacy checkpoints).
It prints one line and exits 0 when the model loads, or one line naming the problem and exits 1.
"""

from __future__ import annotations

import sys

from common.settings import Settings
from worker.runtime.errors import ModelLoadError


def fetch(name: str, repo: str) -> str:
    """Load model `name` (from folder `repo` when given) and return a one-line summary."""
    from worker.separation.model import load_model  # imports torch: keep it out of module import

    model = load_model(name, repo)
    return f"{name}: {', '.join(model.sources)} at {model.samplerate} Hz"


def main() -> int:
    """Fetch the configured model; return the process exit code."""
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


if __name__ == "__main__":
    sys.exit(main())
