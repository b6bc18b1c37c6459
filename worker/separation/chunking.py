"""A RoFormer's chunked inference, streamed: the chunking of the reference, python-audio-
separator 0.47.1's `MDXCSeparator.demix` for RoFormer models (after Music-Source-Separation-
Training's `demix`), with the chunks run in batches and overlap-added in rolling buffers.

The reference's plan, followed exactly: chunk = stft_hop_length x (dim_t - 1) samples, step =
chunk // num_overlap; chunks start at 0, step, 2 step, ... until one would reach the end, and
the last chunk is aligned to the end (a song shorter than a chunk is one shorter chunk). Each
output is weighted by a symmetric Hamming window of the chunk's length, and the weighted sum is
divided by the summed weights (a sample no output reached stays silent). Not copied: its level
changes (it scales a mix and stems peaking above 0.9 down to 0.9); the level is kept.

Memory holds the mix from the next chunk on and the sums of the chunks in flight, so it is
flat in the song's length. Needs torch and worker/ only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from worker.runtime.progress import Progress
from worker.separation import heap
from worker.separation.device import MAX_BATCH, PRECISIONS, DeviceRunner
from worker.separation.msst_config import RoformerConfig
from worker.separation.rolling import OverlapAdd, Window


def chunk_starts(length: int, chunk: int, step: int) -> list[int]:
    """Where the reference's chunks start in a `length`-sample song."""
    starts: list[int] = []
    for offset in range(0, length, step):
        if offset + chunk >= length:
            tail = max(length - chunk, 0)
            if not starts or starts[-1] != tail:
                starts.append(tail)
            break
        starts.append(offset)
    return starts


def hamming(length: int) -> torch.Tensor:
    """scipy.signal.windows.hamming(length) (symmetric), as float32."""
    return torch.hamming_window(length, periodic=False, dtype=torch.float64).float()


class ChunkedModel(DeviceRunner):
    """A RoFormer network on a device, separating songs chunk batch by chunk batch."""

    def __init__(self, network: torch.nn.Module, config: RoformerConfig,
                 device: torch.device | str, precision: str = "fp32", batch: int = 0,
                 compile: bool = False, pad: bool | None = None):
        """`batch` (DEMUCS_BATCH) 0 takes the configuration's `inference.batch_size`, chunks
        per forward pass as in the reference: that many on the CPU (1 when unset), and on
        CUDA as many as free memory holds, at most that many (MAX_BATCH when unset)."""
        self.config = config
        self.chunk, self.step = config.chunk, config.chunk // config.overlap
        self.window = hamming(self.chunk)
        self.low: dict[tuple[str, str], nn.Module] = {}
        if not batch and torch.device(device).type != "cuda":
            batch = config.batch_size or 1
        super().__init__(network, [network], device, precision, batch, compile, pad,
                         cap=config.batch_size or MAX_BATCH)
        if self.home.type == "cpu":
            heap.retain()  # a third of the CPU time went to zeroing re-mapped activations

    def runnable(self) -> nn.Module:
        """The network as it runs now: in bf16 or fp16, a copy whose linear layers hold their
        weights in that type, so that autocast does not convert every weight on every call (a
        third of the CPU time in bf16); norms and rotary angles stay float32. The fp32 network
        is kept as it is, for fp32 and for another device."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return self.model
        key = (str(self.device), self.precision)
        if key not in self.low:
            self.low.clear()
            low = copy.deepcopy(self.model)
            for module in low.modules():
                if isinstance(module, nn.Linear):
                    module.to(dtype)
            if self.compiled:
                self.forwards[id(low)] = self._compile(low)
            self.low[key] = low
        return self.low[key]

    def segment_bytes(self) -> int:
        """Device memory one more chunk in a batch needs, measured with a batch of two."""
        return self._measure(self.runnable(), (self.config.channels, self.chunk))

    def warm_up(self) -> None:
        """One full batch through the network, so that kernel set-up (and compilation)
        happens before the first song."""
        noise = torch.Generator().manual_seed(0)
        # Noise, not silence: silence makes denormal numbers, which are slow on CPUs.
        batch = torch.randn(self.batch, self.config.channels, self.chunk, generator=noise)
        self._forward(self.runnable(), batch.to(self.device))

    def separate(self, mix: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
        """`[stems, channels, samples]` on the CPU for a `[channels, samples]` mix."""
        return torch.cat(list(self.stream([mix], mix.shape[-1], progress)), dim=-1)

    def stream(self, blocks: Iterable[torch.Tensor], length: int,
               progress: Progress | None = None) -> Iterator[torch.Tensor]:
        """The stems `[stems, channels, n]` of a `length`-sample mix given as `[channels, n]`
        blocks, as finished stretches in order on the CPU; with one target instrument, its
        estimate and the mix minus it."""
        if self.device != self.home:
            self.move_to(self.home)
        try:
            yield from self._stream(blocks, length, progress)
        finally:
            if self.home.type == "cpu":
                heap.release()  # the song's activations, kept for reuse while it ran

    def _stream(self, blocks: Iterable[torch.Tensor], length: int,
                progress: Progress | None) -> Iterator[torch.Tensor]:
        window, sums = Window(iter(blocks), length), OverlapAdd()
        starts = chunk_starts(length, self.chunk, self.step)
        done = emitted = 0
        while done < len(starts):
            ran = self._run_batch(starts, done, window, sums, length)
            done += ran
            if ran and progress is not None:
                progress(done / len(starts))
            upto = starts[done] if done < len(starts) else length
            if upto > emitted:
                stems = sums.take(upto).cpu()
                if self.config.target is not None:  # the residual: the mix minus the target
                    mix = window.chunk(emitted, upto - emitted, upto - emitted)
                    stems = torch.cat([stems, mix[None] - stems])
                yield stems
                emitted = upto
            window.release(upto)

    def _run_batch(self, starts: list[int], first: int, window: Window, sums: OverlapAdd,
                   length: int) -> int:
        """Run the chunks from `first` on, as many as a batch holds; the number run (0 after
        running out of memory, with a smaller batch or the CPU to try next)."""
        n = min(self.chunk, length)
        stop = min(len(starts), first + self.batch)
        chunks = torch.stack([window.chunk(start, n, n) for start in starts[first:stop]])
        try:
            # A song shorter than a chunk meets the network at a shape of its own: no graph.
            result = self._forward(self.runnable(), chunks.to(self.device),
                                   eager=n != self.chunk)
        except torch.cuda.OutOfMemoryError:
            result = None  # shrink outside the handler: its traceback holds device memory
        if result is None:
            self._shrink()
            return 0
        weight = self.window[:n].to(result.device)
        if result.shape[-1] < n:  # the network gave up to a hop less: that part weighs 0
            weight = weight.clone()
            weight[result.shape[-1]:] = 0
            result = F.pad(result, (0, n - result.shape[-1]))
        for row, start in enumerate(starts[first:stop]):
            sums.add(start, result[row, ..., :n], weight)
        return stop - first
