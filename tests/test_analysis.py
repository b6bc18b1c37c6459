"""Song analysis (worker/render/analysis.py) on generated signals of known tempo, key and
level, stored as the separation worker stores stems; and the waveform peaks' file format."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from tests.stems import write_lossless
from worker.render.analysis import Autocorrelation, analyse
from worker.render.peaks import LEVELS, peaks_files, read_peaks

RATE = 44100


def stored(tmp_path, wav: np.ndarray, name: str = "stem") -> dict[str, str]:
    """`{name: path}` of a `[channels, samples]` signal as a lossless stem file."""
    path = tmp_path / f"{name}.flac"
    path.write_bytes(write_lossless(wav.astype(np.float32), RATE))
    return {name: str(path)}


def stereo(mono: np.ndarray) -> np.ndarray:
    return np.stack([mono, mono])


def click_track(bpm: float, seconds: float) -> np.ndarray:
    signal = np.zeros(int(seconds * RATE))
    t = np.arange(int(0.02 * RATE)) / RATE
    click = np.sin(2 * np.pi * 1000 * t) * np.exp(-t * 200) * 0.5
    for beat in np.arange(0, seconds, 60 / bpm):
        start = int(beat * RATE)
        signal[start:start + len(click)] += click[:len(signal) - start]
    return stereo(signal)


def cadence(tonic_midi: int, minor: bool) -> np.ndarray:
    """I - IV - V - I in the key of `tonic_midi`, a second per chord."""
    third = 3 if minor else 4
    chords = [(0, third, 7), (5, 5 + third, 12), (7, 11, 14), (0, third, 7)]
    t = np.arange(RATE) / RATE
    return stereo(np.concatenate([
        sum(np.sin(2 * np.pi * 440 * 2 ** ((tonic_midi + step - 69) / 12) * t) for step in chord)
        * 0.05 for chord in chords]))


@pytest.mark.parametrize("bpm", [75, 90, 120, 128, 150])
def test_the_tempo_of_a_click_track(tmp_path, bpm):
    figures = analyse(stored(tmp_path, click_track(bpm, 30)), {"stem": 1.0})
    assert abs(figures["tempo_bpm"] - bpm) < 1
    assert figures["duration_s"] == 30.0


@pytest.mark.parametrize("tonic, minor, key", [(60, False, "C major"), (67, False, "G major"),
                                               (62, False, "D major"), (57, True, "A minor"),
                                               (64, True, "E minor")])
def test_the_key_of_a_cadence(tmp_path, tonic, minor, key):
    assert analyse(stored(tmp_path, cadence(tonic, minor)), {"stem": 1.0})["key"] == key


@pytest.mark.parametrize("dbfs", [-6.0, -20.0, -31.5])
def test_the_loudness_of_a_sine_at_a_known_level(tmp_path, dbfs):
    # A 997 Hz sine of amplitude A on both channels reads 20 log10(A) LUFS: the K-weighting's
    # gain there is what the -0.691 of BS.1770 takes back.
    t = np.arange(20 * RATE) / RATE
    wav = stereo(10 ** (dbfs / 20) * np.sin(2 * np.pi * 997 * t))
    figures = analyse(stored(tmp_path, wav), {"stem": 1.0})
    assert abs(figures["loudness_lufs"] - dbfs) < 0.1
    reference = pyloudnorm.Meter(RATE).integrated_loudness(wav.T)
    assert abs(figures["loudness_lufs"] - reference) < 0.01
    assert figures["tempo_bpm"] is None  # a steady tone has no beat


def test_silence_has_no_figures_but_its_length(tmp_path):
    figures = analyse(stored(tmp_path, np.zeros((2, RATE * 3))), {"stem": 1.0})
    assert figures == {"tempo_bpm": None, "key": None, "loudness_lufs": None, "duration_s": 3.0}


def test_gains_scale_the_sum_before_it_is_measured(tmp_path):
    t = np.arange(10 * RATE) / RATE
    tone = stereo(0.1 * np.sin(2 * np.pi * 997 * t))
    sources = {**stored(tmp_path, tone, "a"), **stored(tmp_path, tone, "b")}
    both = analyse(sources, {"a": 1.0, "b": 1.0})["loudness_lufs"]
    halved = analyse(sources, {"a": 0.5, "b": 0.5})["loudness_lufs"]
    assert abs(both - (-20 + 20 * np.log10(2))) < 0.1 and abs(halved - -20) < 0.1


def test_peaks_files_hold_min_and_max_per_bucket(tmp_path):
    ramp = stereo(np.linspace(-1, 1, 100_000))
    names = peaks_files(stored(tmp_path, ramp), {"stem": 1.0}, "stem", str(tmp_path),
                        block=32768)
    assert names == [f"stem.{spp}.dat" for spp in LEVELS]
    rate, spp, pairs = read_peaks((tmp_path / names[0]).read_bytes())
    assert (rate, spp, len(pairs)) == (RATE, LEVELS[0], -(-100_000 // LEVELS[0]))
    assert tuple(pairs[0]) == (-127, round((-1 + 2 * 511 / 99_999) * 127))
    assert tuple(pairs[-1])[1] == 127
    assert np.all(np.diff(pairs[:, 0].astype(int)) >= 0)  # a rising ramp, bucket by bucket


@pytest.mark.parametrize("pieces", [1, 60, 400])  # blocks longer, shorter than the lags
def test_the_onsets_autocorrelation_is_exact_and_keeps_no_more_than_its_lags(pieces):
    """The tempo's autocorrelation is summed block by block: what it keeps does not grow with
    the song (it kept the whole onset envelope, and an FFT of twice its length)."""
    signal = np.random.default_rng(3).uniform(0, 2, 6000).astype(np.float32)
    lags = 130
    centred = signal.astype(np.float64) - signal.mean(dtype=np.float64)
    expected = [np.dot(centred[:len(centred) - k], centred[k:]) for k in range(lags + 1)]
    autocorrelation = Autocorrelation(lags)
    for block in np.array_split(signal, pieces):
        autocorrelation.add(block)
    np.testing.assert_allclose(autocorrelation.correlation(), expected, atol=1e-9 * expected[0])
    held = (autocorrelation.head, autocorrelation.tail, autocorrelation.products)
    assert [len(array) for array in held] == [lags, lags, lags + 1]


def test_peaks_files_are_written_block_by_block_with_their_counts(tmp_path):
    """Blocks that do not divide into the buckets: each block's own, as when held whole."""
    ramp = stereo(np.linspace(-1, 1, 100_000))
    sources = stored(tmp_path, ramp)
    whole = tmp_path / "whole"
    whole.mkdir()
    peaks_files(sources, {"stem": 1.0}, "stem", str(whole), block=200_000)
    names = peaks_files(sources, {"stem": 1.0}, "stem", str(tmp_path), block=1000)
    for name, spp in zip(names, LEVELS, strict=True):
        rate, level, pairs = read_peaks((tmp_path / name).read_bytes())
        assert (rate, level, len(pairs)) == (RATE, spp, 100 * -(-1000 // spp))
    assert read_peaks((whole / names[0]).read_bytes())[2].shape == (-(-100_000 // 512), 2)
