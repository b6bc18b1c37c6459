"""The reference RoFormer inference: python-audio-separator 0.47.1's own network code and the
RoFormer branch of its `MDXCSeparator.demix` (audio_separator/separator/architectures/
mdxc_separator.py, MIT licence, Copyright (c) 2023 karaokenerds), and tiny random-weight
models of both families written in the MSST format (YAML with python tuples, a state dict).

audio-separator is installed without its dependencies (requirements-dev.txt): its package
imports onnxruntime and more at the top, so its roformer modules are loaded from its installed
files under their own names, with the three parent packages registered empty. Its Mel-Band
module imports librosa for one filter bank; librosa is not installed, so `librosa.filters.mel`
is our copy (worker.separation.roformer.mel_filter_bank), itself checked against librosa's own
output in tests/test_roformer_model.py.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from worker.separation.roformer import mel_filter_bank

BS_BANDS = (2, 2, 4, 8, 16, 32, 65)  # 129 bins: an STFT of 256
SMALL = {"dim": 16, "depth": 1, "stereo": True, "time_transformer_depth": 1,
         "freq_transformer_depth": 1, "dim_head": 8, "heads": 2, "stft_n_fft": 256,
         "stft_hop_length": 64, "stft_win_length": 256, "mask_estimator_depth": 2,
         "flash_attn": True, "attn_dropout": 0.0, "ff_dropout": 0.0}


@functools.cache
def _reference_modules() -> types.SimpleNamespace:
    """audio-separator's bs_roformer and mel_band_roformer modules, loaded from its files."""
    spec = importlib.util.find_spec("audio_separator")
    assert spec is not None and spec.submodule_search_locations, "audio-separator is missing"
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, folder in [("audio_separator", root), ("audio_separator.separator",
                                                     root / "separator"),
                         ("audio_separator.separator.uvr_lib_v5",
                          root / "separator" / "uvr_lib_v5")]:
        if name not in sys.modules:  # an empty package: its __init__ imports the world
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    if "librosa" not in sys.modules:
        librosa = types.ModuleType("librosa")
        filters = types.ModuleType("librosa.filters")
        filters.mel = lambda *, sr, n_fft, n_mels: mel_filter_bank(sr, n_fft, n_mels)  # type: ignore[attr-defined]
        librosa.filters = filters  # type: ignore[attr-defined]
        sys.modules["librosa"], sys.modules["librosa.filters"] = librosa, filters
    with warnings.catch_warnings():  # rotary-embedding-torch's deprecated autocast decorator
        warnings.simplefilter("ignore", FutureWarning)
        base = "audio_separator.separator.uvr_lib_v5.roformer."
        return types.SimpleNamespace(
            bs=importlib.import_module(base + "bs_roformer"),
            mel=importlib.import_module(base + "mel_band_roformer"))


def reference_network(family: str, model: dict) -> torch.nn.Module:
    """audio-separator's network for an MSST `model` section."""
    modules = _reference_modules()
    keywords = {k: (tuple(v) if isinstance(v, list) else v) for k, v in model.items()}
    network = modules.bs.BSRoformer if family == "bs_roformer" else modules.mel.MelBandRoformer
    with warnings.catch_warnings():  # its constructor's trial STFT has no window
        warnings.simplefilter("ignore", UserWarning)
        return network(**keywords).eval()


def write_model(folder: Path, name: str, family: str, *, instruments: list[str],
                target: str | None = None, seed: int = 0, dim_t: int = 33, overlap: int = 4,
                batch_size: object = 1, config_only: dict | None = None,
                **model: object) -> dict:
    """`name.yaml` and `name.ckpt` of a random-weight model in `folder`; its model section.
    `config_only`: model keys written to the YAML but not given to the network;
    `batch_size`: `inference.batch_size` (None: left out)."""
    section: dict = dict(SMALL)
    section["num_stems"] = 1 if target else len(instruments)
    if family == "bs_roformer":
        section["freqs_per_bands"] = BS_BANDS
    else:
        section.update(num_bands=8, sample_rate=44100, mask_estimator_depth=1)
    section.update(model)
    config = {"audio": {"chunk_size": section["stft_hop_length"] * (dim_t - 1),
                        "hop_length": section["stft_hop_length"], "sample_rate": 44100,
                        "num_channels": 2},
              "model": {**section, **(config_only or {})},
              "training": {"instruments": instruments, "target_instrument": target,
                           "batch_size": 2, "lr": 1e-4},
              "inference": {"dim_t": dim_t, "num_overlap": overlap}}
    if batch_size is not None:
        config["inference"]["batch_size"] = batch_size
    text = yaml.dump(config, sort_keys=False)  # tuples become !!python/tuple, as MSST's do
    (folder / f"{name}.yaml").write_text(text)
    torch.manual_seed(seed)
    network = reference_network(family, section)
    with torch.no_grad():  # weights of a trained model's scale, not the init's near-zero ones
        for parameter in network.parameters():
            if parameter.ndim > 1:
                parameter.normal_(0, parameter.shape[-1] ** -0.5)
    torch.save(network.state_dict(), folder / f"{name}.ckpt")
    return section


def reference_demix(network: torch.nn.Module, mix: np.ndarray, chunk: int, overlap: int,
                    instruments: list[str], target: str | None,
                    device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """audio-separator 0.47.1's `MDXCSeparator.demix`, RoFormer branch, in fp32, the network
    on `device` and the sums on the CPU (without its pitch shift and its level changes)."""
    mix_t = torch.tensor(mix, dtype=torch.float32)
    step = chunk // overlap
    req_shape = (len(instruments),) + tuple(mix_t.shape)
    window = torch.tensor(np.hamming(chunk), dtype=torch.float32)  # = scipy's symmetric hamming
    with torch.no_grad():
        result = torch.zeros(req_shape, dtype=torch.float32)
        counter = torch.zeros(req_shape, dtype=torch.float32)
        for start_idx in _roformer_chunk_starts(mix_t.shape[1], chunk, step):
            part = mix_t[:, start_idx:start_idx + chunk]
            length = part.shape[-1]
            x = network(part.unsqueeze(0).to(device))[0].cpu()
            safe_len = min(length, x.shape[-1], window.shape[0])
            result[..., start_idx:start_idx + safe_len] += x[..., :safe_len] * window[:safe_len]
            counter[..., start_idx:start_idx + safe_len] += window[:safe_len]
    counter.clamp_(min=1e-10)
    result.div_(counter)
    if target is None:
        return {name: value.numpy() for name, value in zip(instruments, result, strict=True)}
    primary = result[0].numpy()
    return {"primary": primary, "secondary": mix - primary}


def _roformer_chunk_starts(audio_length: int, chunk_size: int, step: int) -> list[int]:
    """MDXCSeparator._roformer_chunk_starts, verbatim."""
    starts: list[int] = []
    for offset in range(0, audio_length, step):
        if offset + chunk_size >= audio_length:
            tail_start = max(audio_length - chunk_size, 0)
            if not starts or starts[-1] != tail_start:
                starts.append(tail_start)
            break
        starts.append(offset)
    return starts
