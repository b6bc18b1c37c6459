"""A RoFormer model's YAML configuration, read as Music-Source-Separation-Training reads it.

The keys used: `audio.sample_rate`, `audio.chunk_size` (and `audio.hop_length`), `model.*` (the
network's constructor keywords), `training.instruments` / `training.target_instrument`,
`inference.dim_t`, `inference.num_overlap`, `inference.batch_size`. MSST's files spell tuples
as `!!python/tuple`; they are read by a safe loader that knows that one tag and nothing else
of Python, so a configuration can never run code.

The family is read from the model section: `freqs_per_bands` (the band widths in STFT bins)
makes a BS-RoFormer, `num_bands` (a count of mel bands) a Mel-Band RoFormer. A key the family's
network does not take stops the load, as a typo would otherwise be silently ignored.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from worker.runtime.errors import ModelLoadError

BS, MEL = "bs_roformer", "mel_band_roformer"
RESIDUAL = {"vocals": "instrumental", "instrumental": "vocals"}  # mix minus the one target
# Keywords MSST's constructors take that change nothing at inference: accepted and ignored.
TRAINING_ONLY = {"attn_dropout", "ff_dropout", "flash_attn", "sage_attention",
                 "use_torch_checkpoint", "multi_stft_resolution_loss_weight",
                 "multi_stft_resolutions_window_sizes", "multi_stft_hop_size",
                 "multi_stft_normalized", "multi_stft_window_fn", "stft_window_fn",
                 "dim_freqs_in"}


class _TupleLoader(yaml.SafeLoader):
    """yaml's safe loader plus `!!python/tuple`, which MSST configurations use."""


def _tuple(loader: yaml.SafeLoader, node: yaml.Node) -> tuple:
    if not isinstance(node, yaml.SequenceNode):
        raise yaml.constructor.ConstructorError(None, None, "a tuple must be a sequence",
                                                node.start_mark)
    return tuple(loader.construct_sequence(node, deep=True))


_TupleLoader.add_constructor("tag:yaml.org,2002:python/tuple", _tuple)


@dataclass(frozen=True)
class RoformerConfig:
    """What the worker needs of a configuration: the network and how to cut a song for it."""

    family: str  # BS or MEL
    network: dict[str, Any]  # constructor keywords of the family's network
    samplerate: int
    chunk: int  # samples per chunk: stft_hop_length * (dim_t - 1)
    overlap: int  # chunks covering each sample: step = chunk // overlap
    batch_size: int | None  # chunks per forward pass (`inference.batch_size`); None: unset
    instruments: list[str]  # the network's outputs, in order
    target: str | None  # the one target instrument; then the residual is the mix minus it

    @property
    def sources(self) -> list[str]:
        """The stems served: the network's outputs, plus the residual of a single target."""
        if self.target is None:
            return list(self.instruments)
        return [self.target, RESIDUAL.get(self.target, "instrumental")]

    @property
    def channels(self) -> int:
        """Audio channels the network takes."""
        return 2 if self.network.get("stereo", False) else 1


def read_config(path: Path) -> RoformerConfig:
    """The configuration in `path`; ModelLoadError naming the file and the first problem."""
    try:
        with open(path) as handle:
            raw = yaml.load(handle, Loader=_TupleLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as error:
        raise ModelLoadError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise ModelLoadError(f"{path}: not a readable YAML configuration: {detail}") from None
    try:
        return _parse(raw)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelLoadError(f"{path}: {_message(error)}") from None


def _message(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"missing key {error.args[0]}"
    return str(error)


def _section(raw: Any, name: str) -> dict[str, Any]:
    section = raw.get(name) if isinstance(raw, dict) else None
    if not isinstance(section, dict):
        raise KeyError(name)
    return section


def _parse(raw: Any) -> RoformerConfig:
    model, audio, training = (_section(raw, name) for name in ("model", "audio", "training"))
    inference = _section(raw, "inference") if "inference" in raw else {}
    family = _family(model)
    _check_keys(family, model)
    hop = int(model.get("stft_hop_length", audio.get("hop_length", 512)))
    if "dim_t" in inference:  # what the reference's chunking takes
        chunk = hop * (int(inference["dim_t"]) - 1)
    else:
        chunk = int(audio["chunk_size"])
    overlap = int(inference.get("num_overlap", 4))
    if chunk <= 0 or overlap <= 0 or overlap > chunk:
        raise ValueError(f"chunk of {chunk} samples with num_overlap {overlap}: both must be "
                         "positive, num_overlap at most the chunk")
    batch_size = _batch_size(inference)
    instruments = [str(name) for name in training["instruments"]]
    target = training.get("target_instrument") or None
    outputs = 1 if target else len(instruments)
    if int(model.get("num_stems", 1)) != outputs:
        raise ValueError(f"model.num_stems is {model.get('num_stems', 1)} but training names "
                         f"{outputs} output(s) ({target or ', '.join(instruments)})")
    if target is not None:
        instruments = [str(target)]
    if len(set(instruments)) != len(instruments):
        raise ValueError(f"training.instruments repeats a name: {', '.join(instruments)}")
    return RoformerConfig(family, dict(model), int(audio.get("sample_rate", 44100)), chunk,
                          overlap, batch_size, instruments,
                          str(target) if target else None)


def _batch_size(inference: dict[str, Any]) -> int | None:
    """`inference.batch_size`, the chunks the reference runs through the network at once."""
    if inference.get("batch_size") is None:
        return None
    value = inference["batch_size"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"inference.batch_size must be a whole number of chunks, 1 or more, "
                         f"not {value!r}")
    return value


def _family(model: dict[str, Any]) -> str:
    if ("freqs_per_bands" in model) == ("num_bands" in model):
        raise ValueError("model must have exactly one of freqs_per_bands (BS-RoFormer) and "
                         "num_bands (Mel-Band RoFormer)")
    return BS if "freqs_per_bands" in model else MEL


def _check_keys(family: str, model: dict[str, Any]) -> None:
    from worker.separation.roformer import NETWORKS  # torch: only once a config is read

    accepted = set(inspect.signature(NETWORKS[family]).parameters) | TRAINING_ONLY
    for key in model:
        if key not in accepted:
            raise ValueError(f"unknown key model.{key} for a {family}")
