"""Load the Demucs model once and expose "waveform in, stems out" with progress."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

import torch
from demucs.apply import apply_model

from common.settings import Settings
from worker.runtime.cores import usable_cores
from worker.runtime.errors import ModelLoadError, SeparationFailed
from worker.runtime.progress import Progress
from worker.separation.audio import Summary
from worker.separation.batched import BatchedModel
from worker.separation.model import load_model
from worker.separation.segments import count_segments

log = logging.getLogger("worker")


def pick_device(setting: str) -> torch.device:
    """DEMUCS_DEVICE as a device (`auto`: CUDA when present); ModelLoadError if CUDA is missing."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"DEMUCS_DEVICE={setting} but no CUDA device is available")
    return device


class Separator:
    """One loaded model on one device; `separate` may be called for every job.

    Without shifts the song's segments go through the model in batches
    (worker/separation/batched.py),
    equal to stock `apply_model` in fp32; DEMUCS_SHIFTS > 0 runs stock `apply_model` (fp32).
    """

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
        try:
            self.batched = BatchedModel(self.model, self.device, settings.demucs_precision,
                                        settings.demucs_batch, settings.demucs_compile)
            if not self.shifts:  # with shifts, stock apply_model runs instead
                started = time.monotonic()
                self.batched.warm_up()
                log.info("warm-up took %.1f s", time.monotonic() - started)
        except RuntimeError as error:  # out of memory or a failed compile at start
            raise ModelLoadError(f"cannot prepare the model on {self.device}: {error}") from None
        how = ("stock apply_model, fp32, one segment at a time" if self.shifts else
               f"{self.batched.precision}, {self.batched.batch} segment(s) per batch"
               f"{', compiled' if self.batched.compiled else ''}")
        log.info("model %s loaded on %s (%d torch threads; %s), stems: %s",
                 settings.demucs_model, self.device, threads, how, ", ".join(self.sources))

    def separate(self, wav: torch.Tensor,
                 progress: Progress | None = None) -> dict[str, torch.Tensor]:
        """Stems of a `[channels, samples]` waveform, by source name, on the CPU."""
        # Normalise as demucs.api.Separator does, so results match the stock tools.
        reference = wav.mean(0)
        summary = Summary(wav.shape[-1], reference.mean().item(), reference.std().item(), 0.0)
        out = torch.cat(list(self.stream([wav], summary, progress)), dim=-1)
        return {name: out[index] for index, name in enumerate(self.sources)}

    def stream(self, blocks: Iterable[torch.Tensor], summary: Summary,
               progress: Progress | None = None) -> Iterator[torch.Tensor]:
        """Finished stretches `[sources, channels, n]` of the stems, in order, on the CPU, of
        the audio given as `[channels, n]` blocks whose first pass gave `summary`.

        Memory is bounded by a batch of segments whatever the length, except with
        DEMUCS_SHIFTS > 0: stock apply_model needs the whole song at once.
        """
        mean = torch.tensor(summary.mean, dtype=torch.float32)
        std = torch.tensor(summary.std, dtype=torch.float32) + 1e-8
        mixes = ((block - mean) / std for block in blocks)
        try:
            if self.shifts:
                stretches = iter([self._stock(torch.cat(list(mixes), dim=-1), progress)])
            else:
                stretches = self.batched.stream(mixes, summary.length, self.overlap, progress)
            for stretch in stretches:
                yield stretch * std + mean
        except torch.cuda.OutOfMemoryError as error:
            raise SeparationFailed(f"out of memory: {error}") from error
        except RuntimeError as error:
            raise SeparationFailed(str(error)) from error

    def _stock(self, mix: torch.Tensor, progress: Progress | None) -> torch.Tensor:
        """Stock apply_model with random shifts; progress counts its segments."""
        max_shift = int(0.5 * self.samplerate)
        # Each shift separates up to `max_shift` more samples; count the most it may take.
        total = self.shifts * count_segments(self.model, mix.shape[-1] + max_shift, self.overlap)
        done = 0

        def on_segment(state: dict) -> None:
            nonlocal done
            if state.get("state") == "end" and progress is not None:
                done += 1
                progress(min(1.0, done / total))

        with torch.inference_mode():
            out = apply_model(self.model, mix[None], shifts=self.shifts, split=True,
                              overlap=self.overlap, device=self.device, callback=on_segment)
        if progress is not None:
            progress(1.0)
        return out[0].cpu()
