"""The worker's decoder: a window at a time, never past the duration cap, hidden audio counted."""

from __future__ import annotations

import pytest
import torch

from scripts.local.make_samples import song_mp3
from tests.stems import decode
from worker.runtime.errors import DecodeFailed, TooLong
from worker.separation.audio import BLOCK, blocks, summarise

RATE = 44100


@pytest.fixture(scope="module")
def ten_seconds(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("audio") / "song.mp3"
    path.write_bytes(song_mp3(10, seed=2))
    return str(path)


def test_blocks_make_the_whole_song_and_the_first_pass_its_statistics(ten_seconds):
    parts = list(blocks(ten_seconds, RATE, 2))
    assert len(parts) > 3 and all(part.shape[0] == 2 for part in parts)
    whole = torch.cat(parts, dim=1)
    assert whole.shape[-1] == pytest.approx(10 * RATE, abs=2000)
    summary = summarise(ten_seconds, RATE, 2, max_seconds=60)
    reference = whole.double().mean(0)
    assert summary.length == whole.shape[-1]
    assert summary.mean == pytest.approx(reference.mean().item(), abs=1e-9)
    assert summary.std == pytest.approx(reference.std().item(), rel=1e-9)


def test_decoding_stops_at_the_cap(ten_seconds):
    """Past 2 s the decoder raises TooLong; it hands on at most one block beyond the cap."""
    handed = 0
    with pytest.raises(TooLong, match="more than 2 s"):
        for block in blocks(ten_seconds, RATE, 2, max_seconds=2):
            handed += block.shape[-1]
    assert handed <= 2 * RATE + BLOCK


def test_audio_hidden_behind_a_tag_counts_toward_the_cap(tmp_path):
    """Frames after an ID3v1 `TAG` marker are decoded like any others, so they count."""
    path = tmp_path / "hidden.mp3"
    path.write_bytes(song_mp3(3, seed=1) + b"TAG" + bytes(125) + song_mp3(8, seed=2))
    assert summarise(str(path), RATE, 2, max_seconds=60).seconds > 10
    with pytest.raises(TooLong):
        summarise(str(path), RATE, 2, max_seconds=5)


def test_mono_22_khz_becomes_stereo_at_the_model_rate(tmp_path):
    path = tmp_path / "mono.mp3"
    path.write_bytes(song_mp3(2, seed=1, samplerate=22050, channels=1))
    wav = decode(path.read_bytes(), RATE, 2)
    assert wav.shape[0] == 2 and torch.equal(wav[0], wav[1])
    assert wav.shape[-1] == pytest.approx(2 * RATE, abs=3000)


def test_what_is_not_audio_is_a_decode_failure(tmp_path):
    with pytest.raises(DecodeFailed):
        decode(b"this is not audio at all" * 100, RATE, 2)
