"""Batched separation against stock Demucs `apply_model`, with real (small, untrained) models."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from demucs.apply import BagOfModels, apply_model
from demucs.htdemucs import HTDemucs
from demucs.pretrained import SOURCES, demucs_unittest

from scripts.bench.bench_model import snr_db
from tests.helpers import one_fast
from worker.separation.batched import (
    BatchedModel,
    batch_for_memory,
    cpu_has_native_bf16,
    next_batch,
    resolve_precision,
)
from worker.separation.segments import count_segments, fixed_shape, members, plan

RATE = 44100


def small_htdemucs(seed: int) -> HTDemucs:
    """An HTDemucs with the released layout's features, small enough for a test: 1 s segments."""
    torch.manual_seed(seed)
    return HTDemucs(sources=SOURCES, segment=Fraction(1), channels=4, depth=4, nfft=1024,
                    t_layers=1, bottom_channels=16, dconv_mode=0).eval()


def small_hdemucs() -> torch.nn.Module:
    """demucs_unittest (HDemucs) cut into 1.3 s segments: its last chunk has its own length."""
    torch.manual_seed(1)
    model = demucs_unittest().eval()
    model.segment = 1.3
    return model


def small_bag() -> BagOfModels:
    return BagOfModels([small_htdemucs(2), small_htdemucs(3)],
                       weights=[[1.0, 0.5, 0.0, 2.0], [1.0, 1.0, 1.0, 0.25]])


@pytest.fixture(scope="module")
def mix() -> torch.Tensor:
    """4.3 s of stereo noise with an odd length, so that the last chunk is short."""
    return torch.randn(2, int(4.3 * RATE) + 7, generator=torch.Generator().manual_seed(0))


def stock(model: torch.nn.Module, mix: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return apply_model(model, mix[None], shifts=0, split=True, overlap=0.25)[0]


MODELS = {"htdemucs": lambda: small_htdemucs(0), "hdemucs": small_hdemucs, "bag": small_bag}


@pytest.mark.parametrize(("name", "batch"), one_fast(
    [(name, batch) for name in MODELS for batch in (1, 3, 48)], ("htdemucs", 3)))
def test_fp32_equals_stock_apply_model(name, batch, mix):
    model = MODELS[name]()
    ours = BatchedModel(model, "cpu", "fp32", batch).separate(mix, 0.25)
    assert ours.shape == (4, 2, mix.shape[-1])
    assert snr_db(stock(model, mix), ours) >= 60


def test_padded_last_batch_equals_stock(mix):
    """The fixed-shape path (as when compiled): 6 segments in batches of 4, the last padded."""
    model = small_htdemucs(0)
    assert fixed_shape(model) and len(plan(model, mix.shape[-1], 0.25).offsets) == 6
    runner = BatchedModel(model, "cpu", "fp32", batch=4, pad=True)
    assert snr_db(stock(model, mix), runner.separate(mix, 0.25)) >= 60


def test_only_htdemucs_has_one_input_shape(mix):
    assert fixed_shape(small_bag())
    assert not fixed_shape(small_hdemucs())
    lengths = plan(small_hdemucs(), mix.shape[-1], 0.25).input_lengths
    assert len(set(lengths[:-1])) == 1 and lengths[-1] < lengths[0]


def test_other_overlap_and_a_song_shorter_than_a_segment():
    model = small_htdemucs(0)
    # 2 s: several segments of 1 s at either overlap, and little more to compute.
    for seconds, overlap in ((0.4, 0.25), (2.0, 0.5), (2.0, 0.0)):
        mix = torch.randn(2, int(seconds * RATE), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            reference = apply_model(model, mix[None], shifts=0, overlap=overlap)[0]
        assert snr_db(reference, BatchedModel(model, "cpu", "fp32", 2).separate(
            mix, overlap)) >= 60


@pytest.mark.parametrize("name", ["htdemucs", "bag"])
def test_progress_rises_per_segment_to_one(name, mix):
    model = MODELS[name]()
    seen: list[float] = []
    BatchedModel(model, "cpu", "fp32", batch=4).separate(mix, 0.25, seen.append)
    assert len(seen) == count_segments(model, mix.shape[-1], 0.25)
    assert seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0] < 1


def test_bf16_autocast_stays_close(mix):
    model = small_htdemucs(0)
    ours = BatchedModel(model, "cpu", "bf16", 2).separate(mix, 0.25)
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    assert snr_db(stock(model, mix), ours) >= 20


def test_out_of_memory_halves_the_batch_then_leaves_the_device():
    sizes, batch = [], 48
    while batch is not None:
        sizes.append(batch)
        batch = next_batch(batch)
    assert sizes == [48, 24, 12, 6, 3, 1]


def test_batch_from_free_memory():
    gib = 2**30
    assert batch_for_memory(80 * gib, 1 * gib) == 48
    assert batch_for_memory(20 * gib, 1 * gib) == 16
    assert batch_for_memory(gib // 2, 1 * gib) == 1
    assert batch_for_memory(20 * gib, 1 * gib, cap=8) == 8


def test_precision_choice():
    cpu = torch.device("cpu")
    for explicit in ("fp32", "bf16", "fp16"):
        assert resolve_precision(explicit, cpu) == explicit
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")


def test_cpu_defaults_to_one_segment_per_batch_and_no_compile():
    runner = BatchedModel(small_htdemucs(0), "cpu", "fp32", batch=0, compile=True)
    assert runner.batch == 1 and not runner.compiled and not runner.pad


def test_attention_skips_the_fast_path_only_inside_our_forward(mix):
    """On the CPU our forward routes attention through SDPA and restores the process-wide
    switch afterwards, so stock Demucs in the same process (the benchmark) runs unchanged."""
    model = small_htdemucs(0)
    attention = next(m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention))
    seen = []
    attention.register_forward_pre_hook(
        lambda *_: seen.append(torch.backends.mha.get_fastpath_enabled()))
    assert torch.backends.mha.get_fastpath_enabled()
    BatchedModel(model, "cpu", "fp32", 1).separate(mix, 0.25)
    assert seen and not any(seen)
    assert torch.backends.mha.get_fastpath_enabled()


def blocks_of(mix: torch.Tensor, sizes: list[int], read: list[int]):
    """`mix` in blocks cycling through `sizes`; `read` keeps the count of samples handed out."""
    start, index = 0, 0
    while start < mix.shape[-1]:
        block = mix[:, start:start + sizes[index % len(sizes)]]
        start, index = start + block.shape[-1], index + 1
        read[0] = start
        yield block


@pytest.mark.parametrize("name", one_fast(list(MODELS), "htdemucs"))
def test_a_streamed_song_equals_stock_and_is_read_and_handed_on_as_it_goes(name):
    """12 s (16 segments of 1 s, or 12 of 1.3 s) in blocks of odd sizes, batches of 2."""
    model = MODELS[name]()
    mix = torch.randn(2, 12 * RATE + 5, generator=torch.Generator().manual_seed(2))
    runner = BatchedModel(model, "cpu", "fp32", batch=2)
    read, behind = [0], []
    stretches = []
    for stretch in runner.stream(blocks_of(mix, [5000, 777, 30011], read), mix.shape[-1]):
        stretches.append(stretch)
        behind.append(read[0] - sum(s.shape[-1] for s in stretches))
    assert len(stretches) >= 6
    assert snr_db(stock(model, mix), torch.cat(stretches, dim=-1)) >= 60
    # Between what was read and what was handed on: about a batch of segments and a block.
    segment = max(int(member.segment * RATE) for member, _ in members(model))
    assert max(behind) <= 3 * segment + 30011


def test_a_stream_that_ends_early_is_an_error():
    mix = torch.randn(2, 3 * RATE)
    with pytest.raises(RuntimeError, match="ended before sample"):
        list(BatchedModel(small_htdemucs(0), "cpu", "fp32", 1).stream([mix], 4 * RATE))
