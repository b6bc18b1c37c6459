"""BS-RoFormer and Mel-Band RoFormer: waveform chunks in, one waveform per output stem out.

The networks of Music-Source-Separation-Training (MSST, github.com/ZFTurbo/Music-Source-
Separation-Training, models/bs_roformer/, MIT licence), after lucidrains' BS-RoFormer (MIT
licence), with their constructor keywords and state-dict keys; the blocks are
worker/separation/roformer_layers.py. Where python-audio-separator's copy (0.47.1,
uvr_lib_v5/roformer/) departs from MSST, MSST's model definition is followed: `skip_connection`
(each block adds the outputs of the blocks before it), `linear_transformer_depth` and
`mlp_expansion_factor` in the Mel-Band network, and the BS-RoFormer's inverse STFT cut to the
input's length (audio-separator leaves up to a hop short: only a chunk that is not a whole
number of hops, a song shorter than one chunk, differs). `forward` returns
`[batch, stems, channels, samples]` for `[batch, channels, samples]`, also for one stem.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn

from worker.separation.roformer_layers import (
    BandSplit,
    MaskEstimator,
    RMSNorm,
    RotaryEmbedding,
    Transformer,
)

BLOCK_ELEMENTS = 2**24  # features per block of sequences: 64 MiB in, 256 MiB inside the MLP


def in_blocks(transformer: nn.Module, x: torch.Tensor, along: int) -> None:
    """`transformer` over the sequences of `x` `[b, frames, bands, dim]` along dimension
    `along` (1: time, 2: frequency), a block of sequences at a time, written back in place.

    Whole, a released-size chunk's activations are 100-400 MiB each; in two blocks, half that,
    so the freed memory the CPU runner keeps for reuse (worker/separation/heap.py) is of
    half-size blocks: a peak of 3.1-3.4 GiB, not 4.3-4.5 (BENCHMARKS.md). Smaller blocks
    measured slower. No whole transposed copy of `x` is made.
    """
    d, length = x.shape[-1], x.shape[along]
    across = 3 - along  # the other axis: which sequences
    rows = max(1, BLOCK_ELEMENTS // (length * d * x.shape[0]))
    for start in range(0, x.shape[across], rows):
        part = x.narrow(across, start, min(rows, x.shape[across] - start))
        seqs = part.movedim(along, 2)  # [b, sequences, tokens, dim]
        out = transformer(seqs.reshape(-1, length, d))
        seqs.copy_(out.view(seqs.shape))


class _Roformer(nn.Module):
    """What both families share: STFT, band split, axial transformers, masks, inverse STFT."""

    def _build(self, dim: int, depth: int, stereo: bool, num_stems: int,
               time_transformer_depth: int, freq_transformer_depth: int,
               linear_transformer_depth: int, dim_head: int, heads: int, norm_output: bool,
               stft: dict, skip_connection: bool) -> None:
        self.audio_channels = 2 if stereo else 1
        self.num_stems = num_stems
        self.skip_connection = skip_connection
        self.stft_kwargs = stft
        common: dict[str, Any] = {"dim": dim, "heads": heads, "dim_head": dim_head,
                                  "norm_output": norm_output}
        time_rotary, freq_rotary = RotaryEmbedding(dim_head), RotaryEmbedding(dim_head)
        self.layers = nn.ModuleList()
        for _ in range(depth):
            block: list[nn.Module] = []
            if linear_transformer_depth > 0:
                block.append(Transformer(depth=linear_transformer_depth, linear_attn=True,
                                         **common))
            block.append(Transformer(depth=time_transformer_depth, rotary_embed=time_rotary,
                                     **common))
            block.append(Transformer(depth=freq_transformer_depth, rotary_embed=freq_rotary,
                                     **common))
            self.layers.append(nn.ModuleList(block))

    def _stft(self, audio: torch.Tensor) -> torch.Tensor:
        """`[b, s, t]` to `[b, (f s), frames, 2]`, in float32."""
        b, s, t = audio.shape
        window = torch.hann_window(self.stft_kwargs["win_length"], device=audio.device)
        spec = torch.stft(audio.float().reshape(b * s, t), **self.stft_kwargs, window=window,
                          return_complex=True)
        spec = torch.view_as_real(spec).unflatten(0, (b, s))  # b s f t c
        return spec.transpose(1, 2).flatten(1, 2)

    def _istft(self, spec: torch.Tensor, length: int | None) -> torch.Tensor:
        """`[b, n, (f s), frames]` complex to `[b, n, s, samples]`."""
        b, n, fs, frames = spec.shape
        s = self.audio_channels
        spec = spec.view(b, n, fs // s, s, frames).transpose(2, 3).reshape(b * n * s, -1, frames)
        window = torch.hann_window(self.stft_kwargs["win_length"], device=spec.device)
        audio = torch.istft(spec, **self.stft_kwargs, window=window, length=length)
        return audio.view(b, n, s, -1)

    def _axial(self, x: torch.Tensor) -> torch.Tensor:
        """The transformer blocks over `[b, frames, bands, dim]`: time, then frequency, in
        place (nothing else holds `x`: the band split's output, or a sum made here)."""
        b, t, f, d = x.shape
        store: list[torch.Tensor] = []
        for block in cast("list[nn.ModuleList]", self.layers):
            if len(block) == 3:
                x = block[0](x.reshape(b, t * f, d)).view(b, t, f, d)
            if self.skip_connection:
                for earlier in store:
                    x = x + earlier
            in_blocks(block[-2], x, along=1)
            in_blocks(block[-1], x, along=2)
            if self.skip_connection:
                store.append(x)
        return x

    def _masks(self, x: torch.Tensor) -> torch.Tensor:
        """`[b, n, bins, frames]` complex masks, in float32."""
        estimators = cast("list[nn.Module]", self.mask_estimators)
        masks = torch.stack([estimator(x) for estimator in estimators], dim=1)
        b, n, t, _ = masks.shape
        masks = masks.float().view(b, n, t, -1, 2).transpose(2, 3)
        return torch.view_as_complex(masks.contiguous())


class BSRoformer(_Roformer):
    """Band-split RoFormer: bands of fixed widths in STFT bins (`freqs_per_bands`)."""

    def __init__(self, dim: int, *, depth: int, freqs_per_bands: tuple[int, ...],
                 stereo: bool = False, num_stems: int = 1, time_transformer_depth: int = 2,
                 freq_transformer_depth: int = 2, linear_transformer_depth: int = 0,
                 dim_head: int = 64, heads: int = 8, stft_n_fft: int = 2048,
                 stft_hop_length: int = 512, stft_win_length: int = 2048,
                 stft_normalized: bool = False, mask_estimator_depth: int = 2,
                 mlp_expansion_factor: int = 4, skip_connection: bool = False):
        super().__init__()
        stft = {"n_fft": stft_n_fft, "hop_length": stft_hop_length,
                "win_length": stft_win_length, "normalized": stft_normalized}
        self._build(dim, depth, stereo, num_stems, time_transformer_depth,
                    freq_transformer_depth, linear_transformer_depth, dim_head, heads, False,
                    stft, skip_connection)
        self.final_norm = RMSNorm(dim)
        bins = stft_n_fft // 2 + 1
        if len(freqs_per_bands) < 2 or sum(freqs_per_bands) != bins:
            raise ValueError(f"freqs_per_bands must be 2 or more bands adding up to {bins} "
                             f"bins (stft_n_fft {stft_n_fft}), not {sum(freqs_per_bands)}")
        widths = tuple(2 * f * self.audio_channels for f in freqs_per_bands)
        self.band_split = BandSplit(dim, widths)
        # MSST's BS MLP has mask_estimator_depth - 1 hidden layers (Mel's has depth).
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(dim, widths, mask_estimator_depth - 1, mlp_expansion_factor)
            for _ in range(num_stems))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        with torch.autocast(audio.device.type, enabled=False):
            spec = self._stft(audio)  # b (f s) t c
        x = self.band_split(spec.transpose(1, 2).flatten(2))
        x = self.final_norm(self._axial(x))
        masks = self._masks(x)
        with torch.autocast(audio.device.type, enabled=False):
            out = torch.view_as_complex(spec.contiguous()).unsqueeze(1) * masks
            return self._istft(out, audio.shape[-1])


class MelBandRoformer(_Roformer):
    """Mel-band RoFormer: `num_bands` overlapping mel bands; overlapping masks are averaged."""

    def __init__(self, dim: int, *, depth: int, num_bands: int = 60, stereo: bool = False,
                 num_stems: int = 1, time_transformer_depth: int = 2,
                 freq_transformer_depth: int = 2, linear_transformer_depth: int = 0,
                 dim_head: int = 64, heads: int = 8, sample_rate: int = 44100,
                 stft_n_fft: int = 2048, stft_hop_length: int = 512,
                 stft_win_length: int = 2048, stft_normalized: bool = False,
                 mask_estimator_depth: int = 1, mlp_expansion_factor: int = 4,
                 match_input_audio_length: bool = False, skip_connection: bool = False):
        super().__init__()
        stft = {"n_fft": stft_n_fft, "hop_length": stft_hop_length,
                "win_length": stft_win_length, "normalized": stft_normalized}
        self._build(dim, depth, stereo, num_stems, time_transformer_depth,
                    freq_transformer_depth, linear_transformer_depth, dim_head, heads, True,
                    stft, skip_connection)
        self.match_input_audio_length = match_input_audio_length
        in_band = torch.from_numpy(mel_filter_bank(sample_rate, stft_n_fft, num_bands))
        # As MSST: the first and last bins are forced in, where the filters give (nearly) 0.
        in_band[0, 0] = in_band[-1, -1] = 1.0
        in_band = in_band > 0
        if not in_band.any(dim=0).all():
            raise ValueError(f"num_bands {num_bands} leaves STFT bins outside every band")
        indices = torch.arange(in_band.shape[1]).expand_as(in_band)[in_band]
        if stereo:
            indices = (indices[:, None] * 2 + torch.arange(2)).flatten()
        self.freq_indices: torch.Tensor
        self.num_bands_per_freq: torch.Tensor
        self.register_buffer("freq_indices", indices, persistent=False)
        self.register_buffer("num_bands_per_freq", in_band.sum(0), persistent=False)
        widths = tuple(2 * int(f) * self.audio_channels for f in in_band.sum(1))
        self.band_split = BandSplit(dim, widths)
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(dim, widths, mask_estimator_depth, mlp_expansion_factor)
            for _ in range(num_stems))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        with torch.autocast(audio.device.type, enabled=False):
            spec = self._stft(audio)  # b (f s) t c
        x = self.band_split(spec[:, self.freq_indices].transpose(1, 2).flatten(2))
        masks = torch.view_as_real(self._masks(self._axial(x)))  # b n (band bins) t c
        with torch.autocast(audio.device.type, enabled=False):
            b, n = masks.shape[:2]
            summed = masks.new_zeros(b, n, *spec.shape[1:]).index_add_(2, self.freq_indices,
                                                                        masks)
            denom = self.num_bands_per_freq.repeat_interleave(audio.shape[1]).clamp(min=1e-8)
            averaged = torch.view_as_complex(summed) / denom[:, None]
            out = torch.view_as_complex(spec.contiguous()).unsqueeze(1) * averaged
            return self._istft(out, audio.shape[-1] if self.match_input_audio_length else None)


NETWORKS: dict[str, type[_Roformer]] = {"bs_roformer": BSRoformer,
                                        "mel_band_roformer": MelBandRoformer}


def mel_filter_bank(samplerate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) with its defaults (Slaney scale and norm).

    After librosa 0.11 (ISC licence), step for step and in its dtypes, because only which
    weights are positive matters and float32 rounding decides that at the edges.
    """
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / samplerate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(samplerate / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


_F_SP, _MIN_LOG_HZ, _LOGSTEP = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP


def _hz_to_mel(hz: float) -> float:
    if hz >= _MIN_LOG_HZ:
        return float(_MIN_LOG_MEL + np.log(hz / _MIN_LOG_HZ) / _LOGSTEP)
    return hz / _F_SP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    freqs = _F_SP * mels
    log = mels >= _MIN_LOG_MEL
    freqs[log] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[log] - _MIN_LOG_MEL))
    return freqs
