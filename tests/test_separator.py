"""Separator: models from a local folder (DEMUCS_REPO), as users give them, against stock Demucs."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
import torch
from demucs.apply import BagOfModels, apply_model
from demucs.htdemucs import HTDemucs
from demucs.pretrained import SOURCES

from common.settings import Settings
from scripts.bench.bench_model import snr_db
from worker.separation.separator import Separator

KWARGS = dict(sources=SOURCES, segment=Fraction(1), channels=4, depth=4, nfft=1024, t_layers=1,
              bottom_channels=16, dconv_mode=0)


def write_model(folder, name: str, seed: int) -> HTDemucs:
    """`<name>.th` as demucs.states.load_model reads it; returns the model written."""
    torch.manual_seed(seed)
    model = HTDemucs(**KWARGS).eval()
    torch.save({"klass": HTDemucs, "args": (), "kwargs": KWARGS, "state": model.state_dict()},
               folder / f"{name}.th")
    return model


def settings_for(folder, name: str, **extra: str) -> Settings:
    return Settings.from_env({"DEMUCS_MODEL": name, "DEMUCS_REPO": str(folder),
                              "DEMUCS_PRECISION": "fp32", "DEMUCS_DEVICE": "cpu", **extra})


def stock_stems(model, wav: torch.Tensor, shifts: int = 0) -> torch.Tensor:
    """What the Demucs CLI computes: normalise, apply_model, denormalise."""
    reference = wav.mean(0)
    mean, std = reference.mean(), reference.std() + 1e-8
    with torch.no_grad():
        out = apply_model(model, ((wav - mean) / std)[None], shifts=shifts, overlap=0.25)[0]
    return out * std + mean


@pytest.fixture(scope="module")
def wav() -> torch.Tensor:
    return 0.3 * torch.randn(2, 3 * 44100 + 11, generator=torch.Generator().manual_seed(4))


def test_model_from_a_local_folder_matches_stock(tmp_path, wav):
    model = write_model(tmp_path, "tiny", seed=0)
    separator = Separator(settings_for(tmp_path, "tiny"))
    assert separator.sources == SOURCES and separator.batched.precision == "fp32"
    progress: list[float] = []
    stems = separator.separate(wav, progress.append)
    expected = stock_stems(model, wav)
    assert list(stems) == SOURCES and progress[-1] == 1.0
    for index, name in enumerate(SOURCES):
        assert stems[name].device.type == "cpu" and stems[name].shape == wav.shape
        assert snr_db(expected[index], stems[name]) >= 60


def test_bag_from_a_local_folder_matches_stock(tmp_path, wav):
    first, second = write_model(tmp_path, "first", 1), write_model(tmp_path, "second", 2)
    weights = [[1.0, 0.0, 1.0, 0.5], [0.0, 1.0, 1.0, 0.5]]
    (tmp_path / "pair.yaml").write_text(f"models: [first, second]\nweights: {weights}\n")
    separator = Separator(settings_for(tmp_path, "pair"))
    assert isinstance(separator.model, BagOfModels)
    stems = separator.separate(wav)
    expected = stock_stems(BagOfModels([first, second], weights), wav)
    for index, name in enumerate(SOURCES):
        assert snr_db(expected[index], stems[name]) >= 60


def test_shifts_run_stock_apply_model(tmp_path, wav):
    model = write_model(tmp_path, "tiny", seed=0)
    separator = Separator(settings_for(tmp_path, "tiny", DEMUCS_SHIFTS="2"))
    progress: list[float] = []
    random.seed(5)
    stems = separator.separate(wav, progress.append)
    random.seed(5)
    expected = stock_stems(model, wav, shifts=2)
    assert snr_db(expected[0], stems["drums"]) >= 60
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_torch_threads_setting(tmp_path):
    write_model(tmp_path, "tiny", seed=0)
    before = torch.get_num_threads()
    try:
        Separator(settings_for(tmp_path, "tiny", TORCH_THREADS="1"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
