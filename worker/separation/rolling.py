"""The two rolling buffers of a streamed separation: the mix as far as it was read, and the
weighted sum of the chunks' outputs until each stretch is finished.

Both hold samples by absolute position from a moving start and release everything before it,
so their size is bounded by the chunks in flight, not by the song.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F


class Window:
    """The mix (`[channels, samples]`, `length` in all) read block by block as chunks need it."""

    def __init__(self, blocks: Iterator[torch.Tensor], length: int):
        self.blocks, self.length = blocks, length
        self.start = 0  # absolute position of data[..., 0]
        self.data: torch.Tensor | None = None

    def _read_to(self, end: int) -> None:
        while self.data is None or self.start + self.data.shape[-1] < end:
            block = next(self.blocks, None)
            if block is None:
                raise RuntimeError(f"the audio ended before sample {end} of {self.length}")
            self.data = block if self.data is None else torch.cat([self.data, block], dim=-1)

    def chunk(self, offset: int, length: int, target: int) -> torch.Tensor:
        """What `TensorChunk(mix, offset, length).padded(target)` gives for the whole mix."""
        delta = target - length
        start = offset - delta // 2
        end = start + target
        correct_start, correct_end = max(0, start), min(self.length, end)
        if correct_start < self.start:
            raise RuntimeError(f"sample {correct_start} was already released")
        self._read_to(correct_end)
        assert self.data is not None
        inside = self.data[..., correct_start - self.start:correct_end - self.start]
        return F.pad(inside, (correct_start - start, end - correct_end))

    def release(self, before: int) -> None:
        """Forget the samples before position `before`; no later chunk reads them."""
        if self.data is not None and before > self.start:
            drop = min(before - self.start, self.data.shape[-1])
            self.data = self.data[..., drop:]
            self.start += drop


class OverlapAdd:
    """Chunk outputs times their weights, summed by position, from `start` on."""

    def __init__(self) -> None:
        self.start = 0
        self.out: torch.Tensor | None = None  # [sources, channels, samples]
        self.weights: torch.Tensor | None = None  # [samples]

    def add(self, offset: int, values: torch.Tensor, weight: torch.Tensor) -> None:
        """Add `weight * values` (`[sources, channels, n]`) and `weight` at `offset`."""
        n = values.shape[-1]
        out, weights = self.out, self.weights
        if out is None or weights is None:
            out, weights = values.new_zeros(*values.shape[:-1], 0), weight.new_zeros(0)
        elif out.device != values.device:  # the model moved to another device
            out, weights = out.to(values.device), weights.to(values.device)
        grow = offset + n - self.start - out.shape[-1]
        if grow > 0:
            out = torch.cat([out, out.new_zeros(*out.shape[:-1], grow)], -1)
            weights = torch.cat([weights, weights.new_zeros(grow)])
        at = offset - self.start
        out[..., at:at + n] += weight[:n] * values
        weights[at:at + n] += weight[:n]
        self.out, self.weights = out, weights

    def take(self, upto: int) -> torch.Tensor:
        """The finished stretch from `start` to `upto`, divided by its weights, and forget it."""
        assert self.out is not None and self.weights is not None, "nothing was added"
        count = upto - self.start
        # A sample no chunk reached (a RoFormer output a hop short of a short song) is silent,
        # as the reference's clamped counter makes it; every covered sample weighs far more.
        stretch = self.out[..., :count] / self.weights[:count].clamp(min=1e-10)
        # Copies of what stays, so that the storage of the stretch taken is freed now, not
        # after the next chunks were run and added.
        self.out, self.weights = self.out[..., count:].clone(), self.weights[count:].clone()
        self.start = upto
        return stretch
