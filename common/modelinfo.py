"""What a deployment knows of each model it serves: what its workers registered on loading it,
whether one of them is alive, its speed measured on finished jobs, and the catalogue's entry.

The separation worker writes (register, record_speed); the gateway reads (describe).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from common import catalogue, keys, tracks
from common.redisconn import TextReads

EWMA_WEIGHT = 0.2  # of the newest job in the recent real-time factor: about the last 10 jobs

# KEYS: the model's speed hash. ARGV: device, audio seconds, wall seconds, EWMA weight.
# One step, so that two workers finishing at once both count.
_RECORD_SPEED = """
local device, audio, seconds, weight = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
                                       tonumber(ARGV[4])
local rtf = seconds / audio
local previous = redis.call('HGET', KEYS[1], device .. '|rtf')
if previous then rtf = weight * rtf + (1 - weight) * tonumber(previous) end
redis.call('HINCRBY', KEYS[1], device .. '|jobs', 1)
redis.call('HINCRBYFLOAT', KEYS[1], device .. '|audio_s', audio)
redis.call('HINCRBYFLOAT', KEYS[1], device .. '|seconds', seconds)
redis.call('HSET', KEYS[1], device .. '|rtf', tostring(rtf))
return 1
"""


def register(client: redis.Redis, model: str, worker_id: str, info: dict[str, Any]) -> None:
    """Record what a worker found on loading `model` and that this worker serves it; forget
    the workers of the model whose heartbeat has gone."""
    members = sorted(TextReads(client).members(keys.model_workers(model)) - {worker_id})
    alive = _alive(client, members)
    pipe = client.pipeline()
    pipe.hset(keys.MODELS, model, json.dumps(info["stems"]))  # the original record, kept
    pipe.hset(keys.MODEL_INFO, model, json.dumps(info, sort_keys=True))
    pipe.sadd(keys.model_workers(model), worker_id)
    for member, beating in zip(members, alive, strict=True):
        if not beating:
            pipe.srem(keys.model_workers(model), member)
    pipe.execute()


def record_speed(client: redis.Redis, model: str, device: str, audio_s: float,
                 seconds: float) -> None:
    """Count one finished separation: `seconds` of work for `audio_s` of audio on `device`."""
    if audio_s <= 0 or seconds <= 0:
        return
    client.eval(_RECORD_SPEED, 1, keys.speed(model), device, repr(audio_s), repr(seconds),
                repr(EWMA_WEIGHT))


def speeds(client: redis.Redis, model: str) -> dict[str, dict[str, float | None]]:
    """Measured speed by device: jobs, audio seconds, the overall real-time factor (seconds
    of work per second of audio) and a recent one (weighted toward the last jobs)."""
    fields = TextReads(client).hash(keys.speed(model))
    devices = sorted({name.rpartition("|")[0] for name in fields})
    result = {}
    for device in devices:
        audio = float(fields.get(f"{device}|audio_s", 0))
        seconds = float(fields.get(f"{device}|seconds", 0))
        result[device] = {"jobs": int(fields.get(f"{device}|jobs", 0)),
                          "audio_s": round(audio, 1),
                          "rtf": round(seconds / audio, 4) if audio else None,
                          "rtf_recent": round(float(fields[f"{device}|rtf"]), 4)
                          if f"{device}|rtf" in fields else None}
    return result


def _alive(client: redis.Redis, workers: list[str]) -> list[bool]:
    if not workers:
        return []
    pipe = client.pipeline(transaction=False)
    for worker in workers:
        pipe.exists(keys.heartbeat(worker))
    return [bool(n) for n in pipe.execute()]


def ready_workers(client: redis.Redis, model: str) -> int:
    """How many workers that registered `model` are alive now (their heartbeat key exists)."""
    members = sorted(TextReads(client).members(keys.model_workers(model)))
    return sum(_alive(client, members))


def registered(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """What workers registered of each model: MODEL_INFO, else the stems of the old hash."""
    reads = TextReads(client)
    info = {model: json.loads(raw) for model, raw in reads.hash(keys.MODEL_INFO).items()}
    for model, stems in reads.hash(keys.MODELS).items():
        info.setdefault(model, {"stems": json.loads(stems)})
    return info


def describe(client: redis.Redis, names: Iterable[str], default: str,
             entries: dict[str, catalogue.Entry]) -> list[dict[str, Any]]:
    """Each served model as GET /apiv1/models gives it: what its workers registered wins over
    the catalogue, which wins over what Demucs publishes; unknown facts are null."""
    known = registered(client)
    described = []
    for name in names:
        seen, entry = known.get(name, {}), entries.get(name)
        stems = seen.get("stems") or (entry.stems if entry else list(tracks.known_stems(name)))
        workers = ready_workers(client, name)
        described.append({
            "name": name, "stems": stems, "default": name == default,
            "family": seen.get("family") or (entry.family if entry else None),
            "title": entry.title if entry else None,
            "sample_rate": seen.get("sample_rate") or (entry.sample_rate if entry else None),
            "chunk_s": seen.get("chunk_s") or (entry.chunk_s if entry else None),
            "parameters": seen.get("parameters"),
            "ready": workers > 0, "workers": workers,
            "catalogued": entry is not None,
            "quality": [q.as_dict() for q in entry.quality] if entry else [],
            "speed": speeds(client, name),
        })
    return described
