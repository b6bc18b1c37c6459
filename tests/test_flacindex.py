"""The seek index of lossless stems as the separation worker writes them (common/flac.py):
every point kept is a real frame start, a stretch cut there decodes alone to exactly the
stem's samples, false syncs in the audio are passed over, and a long stem is read in bounded
memory."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile

from common import flac
from common.flacindex import INTERVAL_S, FlacIndexError, build_index, frame_header, read_metadata
from tests.stems import write_lossless

RATE = 44100


def noise(seconds: float, channels: int = 2, seed: int = 1) -> np.ndarray:
    """Loud noise: poorly compressible, so the frames are long and hold many false syncs."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((channels, int(seconds * RATE))) * 0.4).astype("f4")


def pcm(path: Path) -> np.ndarray:
    """Every sample of a FLAC file as int32, read on from its first frame (a stretch's header
    still counts the whole stem's samples: no seek)."""
    with soundfile.SoundFile(path) as stem:
        return stem.read(dtype="int32")


def test_the_format_and_the_header_length_are_the_streaminfos():
    data = write_lossless(noise(3, channels=1), 48000)
    index = build_index(io.BytesIO(data))
    info = soundfile.info(io.BytesIO(data))
    assert (index.sample_rate, index.channels, index.bits, index.total_samples) == (
        48000, 1, 24, info.frames)
    assert index.bytes == len(data)
    assert index.frames[0] == [0, index.header_bytes]
    assert read_metadata(io.BytesIO(data)).header_bytes == index.header_bytes


def test_every_point_is_a_frame_and_a_stretch_from_there_decodes_to_the_stems_samples(
        tmp_path: Path):
    data = write_lossless(noise(20), RATE)
    index = build_index(io.BytesIO(data))
    (whole_file := tmp_path / "whole.flac").write_bytes(data)
    whole = pcm(whole_file)
    samples = [sample for sample, _ in index.frames]
    gaps = np.diff(samples)
    assert len(index.frames) >= 20 / (INTERVAL_S + 0.1)
    assert gaps.min() >= INTERVAL_S * RATE and gaps.max() < INTERVAL_S * RATE + 4096 * 2
    for sample, offset in index.frames:
        _, number, size = frame_header(data, offset, 2)
        assert number * size == sample  # libsndfile writes fixed block sizes
    # Header, then the frames from the fourth point to the seventh: exactly those samples.
    (first, start), (end, stop) = index.frames[3], index.frames[6]
    part = tmp_path / "part.flac"
    part.write_bytes(data[:index.header_bytes] + data[start:stop])
    got = pcm(part)
    assert np.array_equal(got, whole[first:end])


def test_false_syncs_in_the_audio_are_passed_over():
    data = write_lossless(noise(20, seed=7), RATE)
    index = build_index(io.BytesIO(data), interval_s=0)  # every frame kept
    frames = -(-index.total_samples // 4096)
    assert len(index.frames) == frames
    raw = np.frombuffer(data, np.uint8)
    syncs = np.count_nonzero((raw[:-1] == 0xFF) & (raw[1:] & 0xFE == 0xF8))
    assert syncs > frames * 1.5  # noise holds false syncs: the checks passed them over


def test_a_file_that_is_not_flac_or_is_cut_short_is_refused():
    with pytest.raises(FlacIndexError, match="not a FLAC"):
        build_index(io.BytesIO(b"RIFF" + bytes(100)))
    data = write_lossless(noise(3), RATE)
    with pytest.raises(FlacIndexError, match="STREAMINFO says"):
        build_index(io.BytesIO(data[:len(data) // 2]))


def test_a_long_stem_is_read_in_bounded_memory(tmp_path: Path):
    path = tmp_path / "long.flac"
    with flac.writer(str(path), RATE, 2) as stem:
        for minute in range(2):
            flac.write_block(stem, noise(60, seed=minute).T.copy())
    assert path.stat().st_size > 24 << 20
    tracemalloc.start()
    try:
        with open(path, "rb") as file:
            index = build_index(file)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert index.total_samples == 120 * RATE
    assert peak < 12 << 20
