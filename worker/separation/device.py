"""A network on a device, whichever family: precision, batch size from free memory, the
out-of-memory fallback (halve the batch, then the CPU), torch.compile. The families' runners
(worker/separation/batched.py for Demucs, worker/separation/chunking.py for RoFormer) cut the
song and overlap-add; this runs their batches. Needs torch only."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext

import torch

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


class DeviceRunner:
    """Forward passes of `modules` (the model, or each model of a bag) in batches on a device.

    Subclasses say what one more segment costs (`segment_bytes`) and run the song.
    """

    def __init__(self, model: torch.nn.Module, modules: Iterable[torch.nn.Module],
                 device: torch.device | str, precision: str = "fp32", batch: int = 0,
                 compile: bool = False, pad: bool | None = None, one_shape: bool = True,
                 cap: int = MAX_BATCH):
        """`batch` 0 picks from free memory (at most `cap`); `pad` fills the last batch up
        with silent segments, so that every forward pass has one shape (the default when
        compiled); `one_shape`: whether every segment enters at one length (compile pays)."""
        self.model = model.eval()
        self.device = self.home = torch.device(device)
        self.setting = precision
        self.precision = resolve_precision(precision, self.device)
        self.compiled = compile and self.device.type == "cuda" and one_shape
        if compile and not self.compiled:
            log.info("torch.compile skipped: it pays off only on CUDA with one input shape; "
                     "each new shape would compile again")
        self.forwards = {id(m): self._compile(m) if self.compiled else m for m in modules}
        self.pad = self.compiled if pad is None else pad
        self.batch = batch or self._auto_batch(cap)

    def _compile(self, module: torch.nn.Module) -> Callable:
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        # Compiling takes minutes; the caches (TORCHINDUCTOR_CACHE_DIR, best on a volume) make
        # that a once-per-volume cost instead of a once-per-process one.
        inductor_config.fx_graph_cache = True
        if hasattr(functorch_config, "enable_autograd_cache"):  # torch >= 2.5
            functorch_config.enable_autograd_cache = True
        log.info("torch.compile on; inductor cache in %s",
                 os.environ.get("TORCHINDUCTOR_CACHE_DIR", "torch's default temporary folder"))
        return torch.compile(module, dynamic=False)

    def _auto_batch(self, cap: int) -> int:
        if self.device.type != "cuda":
            return 1  # on CPU, batches of several segments measured slower than one at a time
        free, _ = torch.cuda.mem_get_info(self.device)
        cost = self.segment_bytes()
        batch = batch_for_memory(free, cost, cap)
        log.info("batch of %d segments: %.1f GiB free, %.2f GiB per segment", batch,
                 free / 2**30, cost / 2**30)
        return batch

    def segment_bytes(self) -> int:
        """Device memory one more segment in a batch needs."""
        raise NotImplementedError

    def _measure(self, module: torch.nn.Module, segment: tuple[int, ...]) -> int:
        """Device memory per segment of shape `segment`, measured with a batch of two."""
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        self._forward(module, torch.zeros(2, *segment, device=self.device), eager=True)
        torch.cuda.synchronize(self.device)
        return (torch.cuda.max_memory_allocated(self.device) - base) // 2

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
