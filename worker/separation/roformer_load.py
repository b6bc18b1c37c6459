"""Loading a RoFormer model `N` from the models folder: `N.yaml` (its MSST configuration) and
`N.ckpt` (its weights), strictly. A checkpoint that does not match its configuration, key for
key and shape for shape, is refused with one line naming the file and the first mismatch;
nothing is fetched from the network."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from worker.runtime.errors import ModelLoadError
from worker.separation.msst_config import TRAINING_ONLY, RoformerConfig, read_config
from worker.separation.roformer import NETWORKS


def roformer_files(name: str, folder: str) -> tuple[Path, Path] | None:
    """(`N.yaml`, `N.ckpt`) when `N.ckpt` lies in `folder`: then `name` is a RoFormer.

    The checkpoint decides: `N.yaml` alone is a Demucs bag (its weights are `.th` files).
    """
    if not folder:
        return None
    config, weights = Path(folder) / f"{name}.yaml", Path(folder) / f"{name}.ckpt"
    return (config, weights) if weights.exists() else None


def load_roformer(name: str, folder: str) -> tuple[torch.nn.Module, RoformerConfig]:
    """The network of model `name` with its weights, on the CPU, and its configuration."""
    files = roformer_files(name, folder)
    if files is None:
        raise ModelLoadError(f"{Path(folder) / name}.ckpt: no such RoFormer checkpoint")
    config_path, weights_path = files
    for path in files:
        if not path.is_file():
            raise ModelLoadError(f"{path}: missing; a RoFormer model needs {name}.yaml and "
                                 f"{name}.ckpt in {folder}")
    config = read_config(config_path)
    keywords = {k: v for k, v in config.network.items() if k not in TRAINING_ONLY}
    try:
        network = NETWORKS[config.family](**keywords)
    except (TypeError, ValueError) as error:
        raise ModelLoadError(f"{config_path}: {error}") from None
    state = _read_weights(weights_path)
    mismatch = first_mismatch(network.state_dict(), state)
    if mismatch:
        raise ModelLoadError(f"{weights_path}: does not match {config_path.name}: {mismatch}")
    network.load_state_dict(state, strict=True)
    return network.eval(), config


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        detail = " ".join(str(error).split())[:200]
        raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint ({detail})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint saved with its training state around it
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ModelLoadError(f"{path}: not a state dict of tensors")
    return state


def first_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str:
    """The first difference of `given` from `expected` in keys or shapes; '' when none."""
    for key, tensor in expected.items():
        if key not in given:
            return f"missing key {key}"
        if given[key].shape != tensor.shape:
            return (f"key {key} has shape {list(given[key].shape)}, the configuration makes "
                    f"{list(tensor.shape)}")
    unexpected = next((key for key in given if key not in expected), None)
    return f"unexpected key {unexpected}" if unexpected else ""
