"""A RoFormer configuration's `inference.batch_size`: the chunks that go through the network
at once, as in the reference (MSST's `demix`, audio-separator's MDXC), unless DEMUCS_BATCH
says otherwise; the stems do not change with it (tiny random-weight checkpoints)."""

from __future__ import annotations

import pytest
import torch

from common.settings import Settings
from scripts.bench.bench_model import snr_db
from tests.roformer_reference import write_model
from tests.test_roformer import FAMILIES, load_error, song
from worker.separation.chunking import ChunkedModel, chunk_starts
from worker.separation.roformer_load import load_roformer
from worker.separation.separator import Separator


def rows_per_pass(network: torch.nn.Module) -> list[int]:
    """The batch sizes `network` is run with from now on, as they come."""
    seen: list[int] = []
    network.register_forward_pre_hook(lambda _module, args: seen.append(args[0].shape[0]))
    return seen


@pytest.mark.parametrize("family", FAMILIES)
def test_the_configured_batch_runs_that_many_chunks_at_once_and_changes_nothing(tmp_path,
                                                                               family):
    write_model(tmp_path, "m", family, instruments=["vocals", "other"], batch_size=3)
    network, config = load_roformer("m", str(tmp_path))
    assert config.batch_size == 3
    mix = song(0.15, seed=5)
    one = ChunkedModel(network, config, "cpu", "fp32", batch=1).separate(mix)
    seen = rows_per_pass(network)
    runner = ChunkedModel(network, config, "cpu", "fp32")  # DEMUCS_BATCH=0: the config's
    batched = runner.separate(mix)
    chunks = len(chunk_starts(mix.shape[-1], config.chunk, config.chunk // config.overlap))
    assert runner.batch == 3 and chunks == 10
    assert seen == [3, 3, 3, 1]
    for index in range(len(config.sources)):
        assert torch.equal(batched[index], one[index]) or snr_db(
            one[index], batched[index]) >= 100


def test_an_unset_batch_is_one_chunk_at_a_time_on_the_cpu(tmp_path):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"], batch_size=None)
    network, config = load_roformer("m", str(tmp_path))
    assert config.batch_size is None
    assert ChunkedModel(network, config, "cpu", "fp32").batch == 1


def settings(folder, batch: str) -> Settings:
    return Settings.from_env({"DEMUCS_MODEL": "m", "DEMUCS_MODELS": "m",
                              "DEMUCS_REPO": str(folder), "DEMUCS_DEVICE": "cpu",
                              "DEMUCS_PRECISION": "fp32", "TORCH_THREADS": "1",
                              "DEMUCS_BATCH": batch})


def test_demucs_batch_overrides_the_configured_batch(tmp_path):
    write_model(tmp_path, "m", "mel_band_roformer", instruments=["vocals", "other"],
                batch_size=4)
    assert Separator(settings(tmp_path, "0")).batched.batch == 4
    separator = Separator(settings(tmp_path, "2"))
    seen = rows_per_pass(separator.batched.model)
    separator.separate(song(0.15, seed=6))  # 10 chunks
    assert separator.batched.batch == 2 and seen == [2] * 5


@pytest.mark.parametrize("value", [0, -2, "two", 1.5, True])
def test_a_batch_that_is_no_count_of_chunks_is_refused(tmp_path, value):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"], batch_size=value)
    assert f"inference.batch_size must be a whole number of chunks, 1 or more, not {value!r}" \
        in load_error(tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_configured_batch_bounds_the_batch_from_free_memory(tmp_path):
    write_model(tmp_path, "m", "bs_roformer", instruments=["vocals", "other"], batch_size=3)
    network, config = load_roformer("m", str(tmp_path))
    mix = song(0.5, seed=7)
    one = ChunkedModel(network.cuda(), config, "cuda", "fp32", batch=1).separate(mix)
    runner = ChunkedModel(network, config, "cuda", "fp32")
    assert runner.batch == 3  # a tiny network: free memory holds far more
    assert snr_db(one, runner.separate(mix)) >= 100
