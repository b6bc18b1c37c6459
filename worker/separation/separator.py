"""Load the Demucs model once and expose "waveform in, stems out" with progress."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import cast

import torch
from demucs.apply import apply_model

from common.settings import Settings
from worker.runtime.cores import usable_cores
from worker.runtime.errors import ModelLoadError, SeparationFailed
from worker.runtime.progress import Progress
from worker.separation import heap
from worker.separation.audio import Summary
from worker.separation.batched import BatchedModel
from worker.separation.chunking import ChunkedModel
from worker.separation.model import DemucsModel, load_model
from worker.separation.roformer_load import load_roformer, roformer_files
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

    A Demucs model's segments go through it in batches (worker/separation/batched.py), equal to
    stock `apply_model` in fp32; DEMUCS_SHIFTS > 0 runs stock `apply_model` (fp32). A RoFormer
    (`N.yaml` and `N.ckpt` in the models folder) is cut as its reference cuts it and run in
    batches too (worker/separation/chunking.py). Either way: `sources`, `samplerate`,
    `audio_channels`, and `stream` from decoded blocks to finished stretches of the stems.
    """

    def __init__(self, settings: Settings):
        threads = settings.torch_threads or usable_cores()
        torch.set_num_threads(threads)
        self.device = pick_device(settings.demucs_device)
        self.overlap = settings.demucs_overlap
        self.shifts = settings.demucs_shifts
        # Freed stretches and activations go back whole, so memory does not creep with the
        # song's length; a RoFormer on the CPU keeps them instead (heap.retain), for speed.
        heap.map_large_blocks()
        self.roformer = roformer_files(settings.demucs_model, settings.models_dir) is not None
        try:
            how = self._load_roformer(settings) if self.roformer else self._load_demucs(settings)
        except ModelLoadError:
            raise
        except RuntimeError as error:  # out of memory or a failed compile at start
            raise ModelLoadError(f"cannot prepare the model on {self.device}: {error}") from None
        log.info("model %s loaded on %s (%d torch threads; %s), stems: %s",
                 settings.demucs_model, self.device, threads, how, ", ".join(self.sources))

    def _load_demucs(self, settings: Settings) -> str:
        demucs = load_model(settings.demucs_model, settings.models_dir)
        self.model: torch.nn.Module = demucs.to(self.device)
        self.sources: list[str] = list(demucs.sources)
        self.samplerate: int = demucs.samplerate
        self.audio_channels: int = demucs.audio_channels
        self.batched: BatchedModel | ChunkedModel = BatchedModel(
            demucs, self.device, settings.demucs_precision, settings.demucs_batch,
            settings.demucs_compile)
        if self.shifts:  # with shifts, stock apply_model runs instead
            return "stock apply_model, fp32, one segment at a time"
        self._warm_up()
        return self._how("segment")

    def _load_roformer(self, settings: Settings) -> str:
        network, config = load_roformer(settings.demucs_model, settings.models_dir)
        self.model = network.to(self.device)
        self.sources = config.sources
        self.samplerate, self.audio_channels = config.samplerate, config.channels
        if self.shifts:
            log.warning("DEMUCS_SHIFTS=%d ignored: a RoFormer is run as its reference runs it",
                        self.shifts)
            self.shifts = 0
        self.batched = ChunkedModel(network, config, self.device, settings.demucs_precision,
                                    settings.demucs_batch, settings.demucs_compile)
        if self.device.type == "cuda":  # kernel choice (and compiling) before the first song
            self._warm_up()
        return (f"{config.family}, chunks of {config.chunk} samples, {config.overlap} over "
                f"each sample, " + self._how("chunk"))

    def _warm_up(self) -> None:
        started = time.monotonic()
        self.batched.warm_up()
        log.info("warm-up took %.1f s", time.monotonic() - started)

    def _how(self, unit: str) -> str:
        return (f"{self.batched.precision}, {self.batched.batch} {unit}(s) per batch"
                f"{', compiled' if self.batched.compiled else ''}")

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
        if isinstance(self.batched, ChunkedModel):  # RoFormers take the mix as it is
            return _guarded(self.batched.stream(blocks, summary.length, progress))
        return _guarded(self._demucs(blocks, summary, progress))

    def _demucs(self, blocks: Iterable[torch.Tensor], summary: Summary,
                progress: Progress | None) -> Iterator[torch.Tensor]:
        """Normalised as demucs.api.Separator does, so that results match the stock tools."""
        mean = torch.tensor(summary.mean, dtype=torch.float32)
        std = torch.tensor(summary.std, dtype=torch.float32) + 1e-8
        mixes = ((block - mean) / std for block in blocks)
        if self.shifts:
            stretches = iter([self._stock(torch.cat(list(mixes), dim=-1), progress)])
        else:
            assert isinstance(self.batched, BatchedModel)
            stretches = self.batched.stream(mixes, summary.length, self.overlap, progress)
        for stretch in stretches:
            yield stretch.mul_(std).add_(mean)  # in place: the stretch is this loop's own
            del stretch  # not held while the next segments are separated

    def _stock(self, mix: torch.Tensor, progress: Progress | None) -> torch.Tensor:
        """Stock apply_model with random shifts; progress counts its segments."""
        max_shift = int(0.5 * self.samplerate)
        # Each shift separates up to `max_shift` more samples; count the most it may take.
        model = cast(DemucsModel, self.model)
        total = self.shifts * count_segments(model, mix.shape[-1] + max_shift, self.overlap)
        done = 0

        def on_segment(state: dict) -> None:
            nonlocal done
            if state.get("state") == "end" and progress is not None:
                done += 1
                progress(min(1.0, done / total))

        with torch.inference_mode():
            out = apply_model(model, mix[None], shifts=self.shifts, split=True,
                              overlap=self.overlap, device=self.device, callback=on_segment)
        if progress is not None:
            progress(1.0)
        # Out of inference mode, as a tensor of its own: the caller rescales it in place.
        return out[0].cpu().clone()


def _guarded(stretches: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    """The stretches, with the model's failures raised as SeparationFailed."""
    try:
        yield from stretches
    except torch.cuda.OutOfMemoryError as error:
        raise SeparationFailed(f"out of memory: {error}") from error
    except RuntimeError as error:
        raise SeparationFailed(str(error)) from error
