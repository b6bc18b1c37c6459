"""The separation worker's own mp3 encoding: every stem once, the same bytes every time."""

from __future__ import annotations

import numpy as np

from worker.encode import StemEncoder
from worker.render.encode import encode_mp3

RATE = 44100


def stem(seconds: float, seed: int, gain: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (gain * rng.standard_normal((2, int(seconds * RATE) + 17))).astype(np.float32)


def test_pool_encodes_every_stem_deterministically():
    stems = {name: stem(1.5, seed, 0.3) for seed, name in enumerate(["drums", "bass", "other",
                                                                      "vocals"])}
    encoder = StemEncoder(2, RATE, 192)
    try:
        first, second = list(encoder.encode_each(stems)), list(encoder.encode_each(stems))
    finally:
        encoder.close()
    # Every stem exactly once, whatever order they finish in.
    assert sorted(name for name, _ in first) == sorted(stems)
    assert dict(first) == dict(second)
    assert dict(first) == {name: encode_mp3(wav, RATE, 192) for name, wav in stems.items()}
