"""Load the Demucs model once and expose "waveform in, stems out" with progress."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable

import torch
from demucs.apply import BagOfModels, apply_model
from demucs.pretrained import get_model

from common.settings import Settings
from worker.cores import usable_cores
from worker.errors import ModelLoadError, SeparationFailed

log = logging.getLogger("worker")
Progress = Callable[[float], None]


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"DEMUCS_DEVICE={setting} but no CUDA device is available")
    return device


def load_model(name: str, repo: str) -> torch.nn.Module:
    """The model by name, from `repo` when set, else the Hugging Face hub or its cache."""
    where = f"the local folder {repo}" if repo else (
        "the Hugging Face hub and its cache (HF_HOME), then dl.fbaipublicfiles.com")
    if repo and not Path(repo).is_dir():
        raise ModelLoadError(f"cannot load Demucs model {name!r}: DEMUCS_REPO={repo} is not a "
                             "folder")
    try:
        model = get_model(name, Path(repo) if repo else None)
    except (Exception, SystemExit) as error:  # demucs reports some failures by sys.exit
        detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"cannot load Demucs model {name!r} from {where}: {detail}. "
                             "Provide the weights there, or set DEMUCS_MODEL/DEMUCS_REPO") from None
    model.eval()
    return model


class Separator:
    """One loaded model on one device; `separate` may be called for every job."""

    def __init__(self, settings: Settings):
        threads = settings.torch_threads or usable_cores()
        torch.set_num_threads(threads)
        self.device = pick_device(settings.demucs_device)
        self.model = load_model(settings.demucs_model, settings.demucs_repo)
        self.model.to(self.device)
        self.overlap = settings.demucs_overlap
        self.shifts = settings.demucs_shifts
        self.sources: list[str] = list(self.model.sources)
        self.samplerate: int = self.model.samplerate
        self.audio_channels: int = self.model.audio_channels
        log.info("model %s loaded on %s (%d torch threads), stems: %s", settings.demucs_model,
                 self.device, threads, ", ".join(self.sources))

    def _segments(self, length: int) -> int:
        """How many times Demucs will report a finished segment for this many samples."""
        members = len(self.model.models) if isinstance(self.model, BagOfModels) else 1
        segment = float(self.model.max_allowed_segment if isinstance(self.model, BagOfModels)
                        else self.model.segment)
        segment_length = int(self.samplerate * segment)
        stride = int((1 - self.overlap) * segment_length)
        return members * max(1, self.shifts) * math.ceil(length / stride)

    def separate(self, wav: torch.Tensor, progress: Progress | None = None) -> dict[str, torch.Tensor]:
        """Stems of a `[channels, samples]` waveform, by source name, on the CPU."""
        total = self._segments(wav.shape[-1])
        done = 0

        def on_segment(state: dict) -> None:
            nonlocal done
            if state.get("state") == "end" and progress is not None:
                done += 1
                progress(min(1.0, done / total))

        # Normalise as demucs.api.Separator does, so results match the stock tools.
        reference = wav.mean(0)
        mean, std = reference.mean(), reference.std() + 1e-8
        try:
            with torch.inference_mode():
                out = apply_model(self.model, ((wav - mean) / std)[None], shifts=self.shifts,
                                  split=True, overlap=self.overlap, device=self.device,
                                  callback=on_segment)
        except torch.cuda.OutOfMemoryError as error:
            raise SeparationFailed(f"out of GPU memory: {error}") from None
        except RuntimeError as error:
            raise SeparationFailed(str(error)) from None
        out = out[0] * std + mean
        return {name: out[index].cpu() for index, name in enumerate(self.sources)}
