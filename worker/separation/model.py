"""Loading a Demucs model by name: the one way both the worker and the image build
(worker/separation/fetch_model.py) do it. Imports nothing of this project but
worker/runtime/errors.py, so that the image's model layer needs no more files than these."""

from __future__ import annotations

from pathlib import Path

from demucs.apply import BagOfModels
from demucs.demucs import Demucs
from demucs.hdemucs import HDemucs
from demucs.htdemucs import HTDemucs
from demucs.pretrained import get_model

from worker.runtime.errors import ModelLoadError

Member = Demucs | HDemucs | HTDemucs  # one model (a bag holds several)
DemucsModel = BagOfModels | Member


def load_model(name: str, repo: str) -> DemucsModel:
    """The model by name, from `repo` when set, else the Hugging Face hub or its cache."""
    where = f"the local folder {repo}" if repo else (
        "the Hugging Face hub and its cache (HF_HOME), then dl.fbaipublicfiles.com")
    if repo and not Path(repo).is_dir():
        raise ModelLoadError(f"cannot load Demucs model {name!r}: DEMUCS_REPO={repo} is not a "
                             "folder")
    try:
        model: DemucsModel = get_model(name, Path(repo) if repo else None)
    except (Exception, SystemExit) as error:  # demucs reports some failures by sys.exit
        detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"cannot load Demucs model {name!r} from {where}: {detail}. "
                             "Provide the weights there, or set DEMUCS_MODEL/DEMUCS_REPO") from None
    model.eval()
    return model
