"""Demucs's `apply_model` (shifts=0) with the segments run through the model in batches.

The song is cut exactly as `demucs.apply.apply_model` cuts it (segment length, overlap stride,
centred padding of each chunk, the model's valid length, centre trim, triangular weights), so
in fp32 the result equals stock Demucs; only the forward passes are grouped, and the song may
come a window at a time (`stream`). Where the chunks fall is worker/separation/segments.py.
This module needs torch, demucs and worker/ (no service settings, no Redis), so that
scripts/gpu-bench can use it on a machine without the service.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from demucs.utils import center_trim

from worker.runtime.progress import Progress
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

log = logging.getLogger("worker")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_BATCH = 48  # the largest batch measured (H200, 240 s song: 42 segments in one batch)


@contextmanager
def attention_through_sdpa():
    """Route nn.MultiheadAttention through scaled_dot_product_attention while inside.

    Its inference fast path computes attention with explicit bmm and softmax on the CPU; SDPA's
    kernel made one htdemucs segment 4 % faster in fp32 on a 2-core AVX2 CPU, equal to 133 dB.
    The switch is process-wide, so it is restored on the way out.
    """
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


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


def next_batch(batch: int) -> int | None:
    """Batch size to retry with after running out of device memory; None: leave the device."""
    return batch // 2 if batch > 1 else None


def batch_for_memory(free_bytes: int, segment_bytes: int, cap: int = MAX_BATCH) -> int:
    """Segments per batch that fit in 80 % of the free memory, between 1 and `cap`."""
    if segment_bytes <= 0:
        return cap
    return max(1, min(cap, int(0.8 * free_bytes) // segment_bytes))


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 matrix products are emulated and slower than fp32."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(setting: str, device: torch.device) -> str:
    """fp32, bf16 or fp16 for a DEMUCS_PRECISION value on this device.

    auto is bf16 on CUDA (48 dB from stock fp32 at 3.7x its speed on an H200) and on CPUs with
    native bf16 (see BENCHMARKS.md for this machine's figures); fp32 elsewhere.
    """
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


class BatchedModel:
    """One model (or bag) on one device, separating songs segment batch by segment batch."""

    def __init__(self, model: DemucsModel, device: torch.device | str,
                 precision: str = "fp32", batch: int = 0, compile: bool = False,
                 pad: bool | None = None):
        """`batch` 0 picks from free memory; `pad` fills the last batch up with silent
        segments, so that every forward pass has one shape (the default when compiled)."""
        self.model = model.eval()
        self.device = self.home = torch.device(device)
        self.setting = precision
        self.precision = resolve_precision(precision, self.device)
        self.compiled = compile and self.device.type == "cuda" and fixed_shape(model)
        if compile and not self.compiled:
            log.info("torch.compile skipped: it pays off only on CUDA with one input shape "
                     "(HTDemucs); each new shape would compile again")
        self.forwards = {id(m): self._compile(m) if self.compiled else m for m, _ in members(model)}
        self.pad = self.compiled if pad is None else pad
        self.batch = batch or self._auto_batch()

    # -- set-up ---------------------------------------------------------------------------
    def _compile(self, module: torch.nn.Module) -> Callable:
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        # Compiling HTDemucs takes minutes; the caches (TORCHINDUCTOR_CACHE_DIR, best on a
        # volume) make that a once-per-volume cost instead of a once-per-process one.
        inductor_config.fx_graph_cache = True
        if hasattr(functorch_config, "enable_autograd_cache"):  # torch >= 2.5
            functorch_config.enable_autograd_cache = True
        log.info("torch.compile on; inductor cache in %s",
                 os.environ.get("TORCHINDUCTOR_CACHE_DIR", "torch's default temporary folder"))
        return torch.compile(module, dynamic=False)

    def _auto_batch(self) -> int:
        if self.device.type != "cuda":
            return 1  # on CPU, batches of several segments measured slower than one at a time
        free, _ = torch.cuda.mem_get_info(self.device)
        cost = self.segment_bytes()
        batch = batch_for_memory(free, cost)
        log.info("batch of %d segments: %.1f GiB free, %.2f GiB per segment", batch,
                 free / 2**30, cost / 2**30)
        return batch

    def segment_bytes(self) -> int:
        """Device memory one more segment in a batch needs, measured with a batch of two."""
        model, _ = members(self.model)[0]
        length = full_segment_length(model)
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        self._forward(model, torch.zeros(2, model.audio_channels, length, device=self.device),
                      eager=True)
        torch.cuda.synchronize(self.device)
        return (torch.cuda.max_memory_allocated(self.device) - base) // 2

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

    def _forward(self, model: torch.nn.Module, batch: torch.Tensor,
                 eager: bool = False) -> torch.Tensor:
        rows = batch.shape[0]
        compiled = self.compiled and not eager and self.device == self.home
        if self.pad and not eager and rows < self.batch:
            # A compiled graph is specialised to one batch size: pad with silent segments.
            batch = torch.cat([batch, batch.new_zeros(self.batch - rows, *batch.shape[1:])])
        forward = self.forwards[id(model)] if compiled else model
        dtype = PRECISIONS[self.precision]
        autocast = (torch.autocast(self.device.type, dtype=dtype) if dtype is not None
                    else nullcontext())
        # inference_mode tensors cannot enter a compiled graph; no_grad is what compile expects.
        grad_off = torch.no_grad() if compiled else torch.inference_mode()
        attention = attention_through_sdpa() if self.device.type == "cpu" else nullcontext()
        with grad_off, autocast, attention:
            return forward(batch)[:rows].float()

    def _shrink(self) -> None:
        """After an out-of-memory error: halve the batch, or, at one segment, go to the CPU."""
        smaller = next_batch(self.batch)
        torch.cuda.empty_cache()
        if smaller is not None:
            log.warning("out of %s memory with %d segments per batch; retrying with %d",
                        self.device, self.batch, smaller)
            self.batch = smaller
            return
        if self.device.type == "cpu":
            raise RuntimeError("out of memory with one segment per batch on the CPU")
        log.warning("out of %s memory with one segment per batch; continuing on the CPU",
                    self.device)
        self.move_to(torch.device("cpu"))

    def move_to(self, device: torch.device) -> None:
        """Run on `device`: the CPU for the rest of a song that did not fit, then home again."""
        if device == self.home:
            log.info("back on %s with %d segment(s) per batch", device, self.batch)
        self.device = device
        self.model.to(device)
        self.precision = resolve_precision(self.setting, device)

