"""Where Demucs's `apply_model` (shifts=0) cuts a song into chunks, for one model or each
model of a bag: segment length, overlap stride, centred padding and triangular weights.
Only torch and demucs: worker/separation/batched.py runs the chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from demucs.apply import BagOfModels
from demucs.htdemucs import HTDemucs

from worker.separation.model import DemucsModel, Member


@dataclass(frozen=True)
class Plan:
    """Where one model cuts a song: chunk offsets, their lengths and the padded input length."""

    segment_length: int
    offsets: list[int]
    lengths: list[int]
    input_lengths: list[int]


def plan(model: Member, length: int, overlap: float) -> Plan:
    """The chunks `apply_model(split=True)` makes of `length` samples for one (non-bag) model."""
    segment_length = int(model.samplerate * model.segment)
    stride = int((1 - overlap) * segment_length)
    offsets = list(range(0, length, stride))
    lengths = [min(segment_length, length - offset) for offset in offsets]
    # apply_model pads each chunk to model.valid_length(chunk), or leaves it as it is.
    valid = getattr(model, "valid_length", None)
    input_lengths = [valid(n) if valid else n for n in lengths]
    return Plan(segment_length, offsets, lengths, input_lengths)


def full_segment_length(model: Member) -> int:
    """Samples a full segment enters the model with (the first chunk of a long song)."""
    return plan(model, 10**9, 0.25).input_lengths[0]


def transition_weight(segment_length: int, transition_power: float = 1.0) -> torch.Tensor:
    """The triangle apply_model weighs each chunk with, largest in the middle."""
    weight = torch.cat([torch.arange(1, segment_length // 2 + 1),
                        torch.arange(segment_length - segment_length // 2, 0, -1)])
    return (weight / weight.max()) ** transition_power


def members(model: DemucsModel) -> list[tuple[Member, list[float]]]:
    """(model, per-source weights) for each member of a bag, or the model alone with weight 1."""
    if isinstance(model, BagOfModels):
        bag = cast("list[Member]", list(model.models))  # a torch ModuleList of Demucs models
        return list(zip(bag, model.weights, strict=True))
    return [(model, [1.0] * len(model.sources))]


def count_segments(model: DemucsModel, length: int, overlap: float) -> int:
    """Forward passes of single segments a separation of `length` samples makes."""
    return sum(len(plan(member, length, overlap).offsets) for member, _ in members(model))


def fixed_shape(model: DemucsModel) -> bool:
    """Whether every chunk enters the model at one length (HTDemucs pads all to its segment)."""
    return all(isinstance(member, HTDemucs) and member.use_train_segment
               for member, _ in members(model))
