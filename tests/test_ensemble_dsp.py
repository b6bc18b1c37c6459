"""Ensembling, streamed block by block, against python-audio-separator's algorithms computed
whole (tests/uvr_reference.py): equal within 60 dB, for lengths on and off the hop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests import uvr_reference
from worker.render.ensemble import combine
from worker.render.ensemble_dsp import average, spec_blocks


def snr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    """How far below the reference its difference from `actual` lies, in dB."""
    return 10 * np.log10(np.sum(reference ** 2) / max(np.sum((reference - actual) ** 2), 1e-30))


def stems(count: int, length: int, seed: int = 0) -> list[np.ndarray]:
    """Stereo test signals: a tone and noise each, different per input."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 44100
    return [(0.1 * np.sin(2 * np.pi * (220 + 110 * k) * t) + 0.03 * rng.standard_normal(
        (2, length))).astype(np.float32) for k in range(count)]


class ArrayReader:
    def __init__(self, wave: np.ndarray):
        self.wave, self.at = wave.astype(np.float64), 0

    def read(self, n: int) -> np.ndarray:
        block = self.wave[:, self.at:self.at + n]
        self.at += n
        return np.pad(block, ((0, 0), (0, n - block.shape[1])))


@pytest.mark.parametrize("length", [44100 * 3 + 517, 1024 * 200, 5000, 1023])
@pytest.mark.parametrize("loudest", [True, False])
def test_spec_ensembling_equals_uvr(length: int, loudest: bool) -> None:
    waves = stems(3, length, seed=length)
    expected = uvr_reference.uvr_spec([w.copy() for w in waves], loudest)
    # Blocks that do not line up with the hop, to cross frame boundaries everywhere.
    made = np.concatenate(list(spec_blocks([ArrayReader(w) for w in waves], length, loudest,
                                           block=7777)), axis=1)
    assert made.shape == expected.shape == (2, length)
    if length < 1024:  # istft gives back hop * (length // hop) samples: none; zero-padded
        assert not made.any() and not expected.any()
    else:
        assert snr_db(expected, made) > 60


def test_average_equals_avg_wave() -> None:
    waves = stems(3, 10_000)
    assert snr_db(uvr_reference.avg_wave(waves), average([w.astype(np.float64)
                                                          for w in waves])) > 120


@pytest.mark.parametrize("algorithm", ["avg", "max_spec", "min_spec"])
def test_combined_flacs_equal_uvr_on_the_decoded_stems(tmp_path: Path, algorithm: str) -> None:
    waves = stems(2, 44100 * 2 + 99, seed=3)
    paths = []
    for k, wave in enumerate(waves):
        paths.append(str(tmp_path / f"m{k}.flac"))
        soundfile.write(paths[-1], wave.T, 44100, "PCM_24", format="FLAC")
    decoded = [soundfile.read(p, dtype="float32", always_2d=True)[0].T for p in paths]
    combine(paths, algorithm, str(tmp_path / "out.flac"), block=4096)
    out, rate = soundfile.read(tmp_path / "out.flac", dtype="float64", always_2d=True)
    assert rate == 44100 and out.shape == (waves[0].shape[1], 2)
    expected = (uvr_reference.avg_wave(decoded) if algorithm == "avg" else
                uvr_reference.uvr_spec(decoded, algorithm == "max_spec"))
    assert snr_db(expected, out.T) > 60
    again = tmp_path / "again.flac"
    combine(paths, algorithm, str(again), block=10_000)  # another block size, same bytes
    assert again.read_bytes() == (tmp_path / "out.flac").read_bytes()
