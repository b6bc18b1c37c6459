"""Tracks from lossless stems: the Demucs CLI's samples for wav and flac, decodable mp3s,
two-stem sums, the lossless stems' headroom."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
import sphn
import torch
from demucs.audio import encode_wav, i16_pcm
from demucs.audio import prevent_clip as demucs_prevent_clip

from common.flac import LOSSLESS_HEADROOM
from tests.stems import read_lossless, render_track, write_lossless
from worker.render.encode import encode_mp3, to_pcm

RATE = 44100
LAME_FRAME = 1152


def stem(seconds: float, seed: int, gain: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (gain * rng.standard_normal((2, int(seconds * RATE) + 17))).astype(np.float32)


def cli_samples(wav: np.ndarray, bits: int, tmp_path) -> np.ndarray:
    """What `python -m demucs.separate` writes for this track (`--int24` for 24 bits)."""
    path = tmp_path / f"cli-{bits}.wav"
    encode_wav(demucs_prevent_clip(torch.from_numpy(wav.copy()), "rescale"), path, RATE,
               bits_per_sample=bits)
    return soundfile.read(path, dtype="int32")[0]


def decoded(data: bytes) -> np.ndarray:
    return soundfile.read(io.BytesIO(data), dtype="int32")[0]


@pytest.mark.parametrize("gain", [0.2, 3.0])  # quiet, and loud enough to be rescaled
def test_pcm16_is_what_the_demucs_cli_writes(gain):
    wav = stem(1, seed=1, gain=gain)
    expected = i16_pcm(demucs_prevent_clip(torch.from_numpy(wav), "rescale")).t().numpy()
    pcm = to_pcm(wav)
    assert pcm.dtype == np.dtype("<i2") and pcm.flags.c_contiguous
    np.testing.assert_array_equal(pcm, expected)


@pytest.mark.parametrize("bits", [16, 24])
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_lossless_tracks_hold_the_cli_samples(fmt, bits, tmp_path):
    wav = stem(1, seed=2, gain=1.5)  # over full scale: only the clip rescaling saves it
    track = render_track([write_lossless(wav, RATE)], fmt, bits)
    info = soundfile.info(io.BytesIO(track))
    assert (info.format, info.subtype, info.samplerate) == (fmt.upper(), f"PCM_{bits}", RATE)
    # The stem went through 24-bit FLAC at 1/8 of its level: at most one step of 16-bit
    # truncation apart from the CLI's samples, and rarely (against the float stem).
    expected, ours = cli_samples(wav, bits, tmp_path), decoded(track)
    assert ours.shape == expected.shape
    step = 2 ** (32 - bits)  # soundfile gives int32 full scale
    difference = np.abs(ours.astype(np.int64) - expected) // step
    assert difference.max() <= (1 if bits == 16 else 16)
    if bits == 16:
        assert np.mean(difference) < 0.05


def test_a_track_is_the_cli_arithmetic_on_the_lossless_stem(tmp_path):
    data = write_lossless(stem(1, seed=3, gain=0.25), RATE)
    np.testing.assert_array_equal(decoded(render_track([data], "wav", 16)),
                                  cli_samples(read_lossless(data)[0], 16, tmp_path))


def test_lossless_stems_keep_what_exceeds_full_scale():
    wav = stem(0.5, seed=4, gain=1.5)
    back, rate = read_lossless(write_lossless(wav, RATE))
    assert rate == RATE and back.shape == wav.shape
    assert np.abs(wav).max() > 4
    assert np.abs(back - wav).max() <= LOSSLESS_HEADROOM / 2**23


@pytest.mark.parametrize("fmt,quality", [("wav", 16), ("wav", 24), ("flac", 24)])
def test_no_stem_is_the_cli_two_stems_sum_exactly(fmt, quality, tmp_path):
    others = [write_lossless(stem(1, seed, 0.6), RATE) for seed in (5, 6, 7)]
    # The CLI's --two-stems: the other stems added in float, then rescaled and quantized.
    total = sum((read_lossless(data)[0] for data in others), np.zeros((2, RATE + 17), "f4"))
    np.testing.assert_array_equal(decoded(render_track(others, fmt, quality)),
                                  cli_samples(total, quality, tmp_path))


def test_mp3_decodes_to_the_stem_length(tmp_path):
    wav = stem(2, seed=8, gain=0.3)
    path = tmp_path / "stem.mp3"
    path.write_bytes(render_track([write_lossless(wav, RATE)], "mp3", 320))
    data, rate = sphn.read(str(path))
    assert rate == RATE and data.shape[0] == 2
    # LAME adds its encoder delay and pads the last frame; nothing is lost.
    assert wav.shape[1] <= data.shape[1] <= wav.shape[1] + 2 * LAME_FRAME
    assert np.abs(data).max() > 0.1


def test_stems_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="differ"):
        render_track([write_lossless(stem(1, 1, 0.1), RATE),
                      write_lossless(stem(2, 1, 0.1), RATE)], "wav", 16)



@pytest.mark.parametrize("fmt,quality", [("wav", 16), ("wav", 24), ("flac", 16), ("mp3", 128)])
def test_a_track_made_block_by_block_is_the_whole_array_track(fmt, quality, tmp_path):
    """Many blocks, the loudest sample in the last: the rescaling of the first blocks needs
    the peak of the whole song, and the result is exactly the whole-array arithmetic's."""
    wavs = [stem(1, seed, 0.4) for seed in (9, 10, 11)]
    wavs[2][:, -100] = 5.0  # the sum clips only here, 44 blocks in
    sources = [write_lossless(wav, RATE) for wav in wavs]
    total = sum((read_lossless(data)[0] for data in sources), np.zeros((2, RATE + 17), "f4"))
    blocks = render_track(sources, fmt, quality, block=1000)
    assert blocks == render_track(sources, fmt, quality)  # the default block: one here
    if fmt == "mp3":
        assert blocks == encode_mp3(total, RATE, quality)
    else:
        np.testing.assert_array_equal(decoded(blocks), cli_samples(total, quality, tmp_path))
