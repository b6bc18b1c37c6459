"""What a separation worker tells the deployment about its loaded model: the facts it registers
at start (common/modelinfo.py), and the name of the device its speed is counted under."""

from __future__ import annotations

import logging
from typing import cast

import redis
import torch
from demucs.apply import BagOfModels

from common import modelinfo
from worker.separation.chunking import ChunkedModel
from worker.separation.separator import Separator

log = logging.getLogger("worker")


def model_facts(separator: Separator) -> dict:
    """Family, stems, sample rate, chunk length (s) and parameter count of the loaded model."""
    if isinstance(separator.batched, ChunkedModel):  # a RoFormer, cut as its reference cuts it
        config = separator.batched.config
        family, chunk_s = config.family, config.chunk / config.samplerate
    else:  # Demucs: the segment each model (each member of a bag) is run on
        members = separator.model.models if isinstance(separator.model, BagOfModels) else [
            separator.model]
        family, chunk_s = "demucs", max(float(cast(float, member.segment)) for member in members)
    return {"family": family, "stems": list(separator.sources),
            "sample_rate": separator.samplerate, "chunk_s": round(chunk_s, 3),
            "parameters": sum(p.numel() for p in separator.model.parameters())}


def device_label(device: torch.device) -> str:
    """`cpu`, or the GPU's name (`cuda NVIDIA H100 80GB HBM3`): speeds differ by card."""
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    return device.type


def count_speed(client: redis.Redis, model: str, device: torch.device,
                timings: dict[str, float]) -> None:
    """Add a finished separation to the model's measured speed; a lost count loses no song."""
    try:
        modelinfo.record_speed(client, model, device_label(device), timings["audio_seconds"],
                               timings["separate"])
    except redis.RedisError as error:
        log.warning("speed of %s not counted: %s", model, error)
