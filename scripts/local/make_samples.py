"""Synthesise the short songs in data/ (no recorded music): drums, bass, chords and a voice.

    python -m scripts.local.make_samples [--seconds 60 --out data/long.mp3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from worker.render.encode import encode_mp3  # no torch

ROOT = Path(__file__).resolve().parents[2]


def synthesize(seconds: float, samplerate: int = 44100, seed: int = 0) -> np.ndarray:
    """A `[2, samples]` float array: kick and hats, a bass line, chords and a sung melody."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * samplerate)) / samplerate
    beat = 0.5  # 120 bpm
    phase = t % beat
    kick = np.sin(2 * np.pi * 55 * phase * (1 + 2 * np.exp(-phase * 30))) * np.exp(-phase * 12)
    hats = rng.standard_normal(t.size) * np.exp(-((t + beat / 2) % beat) * 60) * 0.15
    roots = np.array([55.0, 73.4, 61.7, 82.4])[(t // (4 * beat)).astype(int) % 4]
    bass = 0.35 * np.sign(np.sin(2 * np.pi * roots * t)) * np.exp(-phase * 3)
    chords = sum(0.08 * np.sin(2 * np.pi * roots * 4 * ratio * t) for ratio in (1, 1.26, 1.5))
    notes = np.array([392.0, 440.0, 493.9, 523.3, 587.3])[(t // beat).astype(int) % 5]
    vibrato = 1 + 0.01 * np.sin(2 * np.pi * 5 * t)
    voice = sum(0.12 / k * np.sin(2 * np.pi * notes * vibrato * k * t) for k in range(1, 6))
    left = kick + hats + bass + chords * 1.2 + voice * 0.8
    right = kick + hats * 0.8 + bass + chords * 0.8 + voice * 1.2
    mix = np.stack([left, right]) * 0.5
    return mix / max(1.0, np.abs(mix).max() * 1.05)


def song_mp3(seconds: float, seed: int = 0, samplerate: int = 44100, channels: int = 2,
             bitrate: int = 128) -> bytes:
    wav = synthesize(seconds, samplerate, seed)[:channels]
    return encode_mp3(wav, samplerate, bitrate)


SAMPLES = {  # file name -> (seconds, seed, sample rate, channels, kbps)
    "short-groove.mp3": (6, 1, 44100, 2, 128),
    "short-mono-22k.mp3": (4, 2, 22050, 1, 64),
    "song.mp3": (15, 3, 44100, 2, 192),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out:
        args.out.write_bytes(song_mp3(args.seconds or 60, args.seed))
        return
    for name, (seconds, seed, rate, channels, kbps) in SAMPLES.items():
        (ROOT / "data" / name).write_bytes(song_mp3(seconds, seed, rate, channels, kbps))


if __name__ == "__main__":
    main()
