"""Demucs's `apply_model` (shifts=0) with the segments run through the model in batches.

The song is cut exactly as `demucs.apply.apply_model` cuts it (segment length, overlap stride,
centred padding of each chunk, the model's valid length, centre trim, triangular weights), so
in fp32 the result equals stock Demucs; only the forward passes are grouped, and the song may
come a window at a time (`stream`). Where the chunks fall is worker/separation/segments.py.
This module needs torch, demucs and worker/ (no service settings, no Redis), so that
scripts/bench/gpu-bench can use it on a machine without the service.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from demucs.utils import center_trim

from worker.runtime.progress import Progress
from worker.separation.device import (  # noqa: F401 - re-exported: what callers import here
    PRECISIONS,
    DeviceRunner,
    batch_for_memory,
    cpu_has_native_bf16,
    next_batch,
    resolve_precision,
)
from worker.separation.model import DemucsModel, Member
from worker.separation.rolling import OverlapAdd, Window
from worker.separation.segments import (
    Plan,
    fixed_shape,
    full_segment_length,
    members,
    plan,
    transition_weight,
)


@dataclass
class _Member:
    """One model of a bag (or the model) on its way through a streamed song."""

    model: Member
    weights: list[float]
    cut: Plan
    next: int = 0  # the first chunk not run yet
    sums: OverlapAdd = field(default_factory=OverlapAdd)

    def __post_init__(self) -> None:
        self.weight = transition_weight(self.cut.segment_length)

    def finished(self, length: int) -> int:
        """Samples before this position get no more chunk output from this member."""
        return self.cut.offsets[self.next] if self.next < len(self.cut.offsets) else length

    def first_needed(self, length: int) -> int:
        """The first sample of the mix the next chunk reads (with its padding)."""
        if self.next == len(self.cut.offsets):
            return length
        delta = self.cut.input_lengths[self.next] - self.cut.lengths[self.next]
        return max(0, self.cut.offsets[self.next] - delta // 2)


class BatchedModel(DeviceRunner):
    """One model (or bag) on one device, separating songs segment batch by segment batch."""

    model: DemucsModel

    def __init__(self, model: DemucsModel, device: torch.device | str,
                 precision: str = "fp32", batch: int = 0, compile: bool = False,
                 pad: bool | None = None):
        """`batch` 0 picks from free memory; `pad` fills the last batch up with silent
        segments, so that every forward pass has one shape (the default when compiled)."""
        super().__init__(model, [m for m, _ in members(model)], device, precision, batch,
                         compile, pad, one_shape=fixed_shape(model))

    def segment_bytes(self) -> int:
        """Device memory one more segment in a batch needs, measured with a batch of two."""
        model, _ = members(self.model)[0]
        return self._measure(model, (model.audio_channels, full_segment_length(model)))

    def warm_up(self) -> None:
        """One full batch through each member, so that kernel set-up (and compilation) happens
        before the first song. Only for one-shape models: others meet new shapes per song."""
        if not fixed_shape(self.model):
            return
        noise = torch.Generator().manual_seed(0)
        for model, _ in members(self.model):
            length = full_segment_length(model)
            # Noise, not silence: silence makes denormal numbers, which are slow on CPUs.
            batch = torch.randn(self.batch, model.audio_channels, length, generator=noise)
            self._forward(model, batch.to(self.device))

    # -- separation -----------------------------------------------------------------------
    def separate(self, mix: torch.Tensor, overlap: float = 0.25,
                 progress: Progress | None = None) -> torch.Tensor:
        """`[sources, channels, samples]` on the CPU for a `[channels, samples]` mix."""
        return torch.cat(list(self.stream([mix], mix.shape[-1], overlap, progress)), dim=-1)

    def stream(self, blocks: Iterable[torch.Tensor], length: int, overlap: float = 0.25,
               progress: Progress | None = None) -> Iterator[torch.Tensor]:
        """The separation of a `length`-sample mix given as `[channels, n]` blocks in order,
        as finished stretches `[sources, channels, n]` on the CPU, in order.

        Blocks are read only as far as the next batch of chunks needs, and each stretch is
        handed on once no later chunk overlaps it, so memory holds about one batch of chunks
        whatever the length. Together the stretches are what `separate` gives.
        """
        if self.device != self.home:
            self.move_to(self.home)
        window = Window(iter(blocks), length)
        parts = [_Member(model, weights, plan(model, length, overlap))
                 for model, weights in members(self.model)]
        totals = [sum(part.weights[source] for part in parts)
                  for source in range(len(self.model.sources))]
        total, done, emitted = sum(len(part.cut.offsets) for part in parts), 0, 0
        while emitted < length:
            # The member furthest behind runs next, so that all advance through the song together.
            part = min(parts, key=lambda member: member.finished(length))
            if part.next < len(part.cut.offsets):
                for _ in range(self._run_batch(part, window)):
                    done += 1
                    if progress is not None:
                        progress(done / total)
            upto = min(member.finished(length) for member in parts)
            if upto > emitted:
                yield self._combine(parts, totals, upto)
                emitted = upto
            window.release(min(member.first_needed(length) for member in parts))

    def _run_batch(self, part: _Member, window: Window) -> int:
        """Run the member's next chunks of one input length; the number run (0 after a shrink)."""
        cut, start = part.cut, part.next
        stop = start + 1
        while (stop < len(cut.offsets) and stop - start < self.batch
               and cut.input_lengths[stop] == cut.input_lengths[start]):
            stop += 1
        chunks = torch.stack([window.chunk(cut.offsets[i], cut.lengths[i], cut.input_lengths[i])
                              for i in range(start, stop)])
        try:
            result = self._forward(part.model, chunks.to(self.device))
        except torch.cuda.OutOfMemoryError:
            result = None  # shrink outside the handler: its traceback holds device memory
        if result is None:
            self._shrink()
            return 0
        weight = part.weight.to(result.device)
        for row, i in enumerate(range(start, stop)):
            part.sums.add(cut.offsets[i], center_trim(result[row], cut.lengths[i]), weight)
        part.next = stop
        return stop - start

    @staticmethod
    def _combine(parts: list[_Member], totals: list[float], upto: int) -> torch.Tensor:
        """The finished stretch up to `upto`: each member's estimate weighted per source."""
        estimates: torch.Tensor | None = None
        for part in parts:
            out = part.sums.take(upto)
            for source, weight in enumerate(part.weights):
                out[source] *= weight
            estimates = out if estimates is None else estimates.to(out.device) + out
        assert estimates is not None
        for source, total_weight in enumerate(totals):
            estimates[source] /= total_weight
        return estimates.cpu()
