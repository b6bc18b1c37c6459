"""The job record and its identifiers, as docs/jobs.md describes them; no Redis calls here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """Where a job is; stored in its record and served as-is."""
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Kind(StrEnum):
    """A separation (model, lossless stems) or a render (stems to one rendition's tracks)."""
    SEPARATE = "separate"
    RENDER = "render"


class EnqueueResult(StrEnum):
    """What a submission did: queued it (anew or again), refused it, or found it there."""
    ENQUEUED = "enqueued"
    RETRIED = "retried"
    QUEUE_FULL = "full"
    ALREADY_QUEUED = "queued"
    ALREADY_PROCESSING = "processing"
    ALREADY_DONE = "done"
    # A deletion of the song is under way, or ended since the caller looked at its upload.
    DELETING = "deleting"

    @classmethod
    def already(cls, status: JobStatus) -> EnqueueResult:
        """What a submission of a song whose job is in `status` (and kept) answers."""
        return {JobStatus.QUEUED: cls.ALREADY_QUEUED, JobStatus.PROCESSING: cls.ALREADY_PROCESSING,
                JobStatus.DONE: cls.ALREADY_DONE}[status]


class CancelResult(StrEnum):
    """What a cancel did to a separation."""
    CANCELLED = "cancelled"  # it was waiting (or was cancelled already): it is cancelled now
    STOPPING = "stopping"  # it is being separated: it stops at the next segment
    FINISHED = "finished"  # it ended, or its separation did: too late to cancel
    MISSING = "missing"  # no such job


class RenditionResult(StrEnum):
    """Where a rendition asked for stands."""
    STORED = "stored"  # its tracks are in the store
    ENQUEUED = "enqueued"  # a render job was queued just now
    QUEUED = "queued"  # a render job was already waiting
    PROCESSING = "processing"  # a render job is making it
    NOT_SEPARATED = "not_separated"  # the song has no lossless stems of that model (yet)
    FAILED = "failed"  # its render job failed, not for lack of workers: asking again won't help
    QUEUE_FULL = "full"  # the render queue is at MAX_QUEUE_LENGTH: ask again later
    TOO_MANY = "too_many"  # the song has MAX_RENDITIONS_PER_SONG renditions already


def separation_id(song_hash: str, model: str, default_model: str) -> str:
    """`H` for DEFAULT_MODEL (the original wire form), `H:<model>` for any other model."""
    return song_hash if model == default_model else f"{song_hash}:{model}"


def render_id(song_hash: str, model: str, rendition: str) -> str:
    """`H:<model>:<rendition>`, always with the model named."""
    return f"{song_hash}:{model}:{rendition}"


def parse_render_id(job_id: str) -> tuple[str, str, str]:
    """`H:<model>:<rendition>` -> (H, model, rendition)."""
    song, model, rendition = job_id.split(":")
    return song, model, rendition


def song_of(job_id: str) -> str:
    """The song hash a job id starts with (separation or render)."""
    return job_id.split(":", 1)[0]


def _number(raw: dict[str, str], name: str) -> float:
    return float(raw.get(name) or 0)


@dataclass(frozen=True)
class Job:
    """One job's record as stored in the hash `job:<id>`."""

    id: str
    status: JobStatus
    kind: Kind = Kind.SEPARATE
    song: str = ""
    model: str = ""
    rendition: str = ""  # render: the one it makes; separation: the one its submitter asked for
    input: str = ""  # separation: the upload's object name in the songs bucket
    parent: str = ""  # render: the id of the separation whose stems it renders
    awaiting: str = ""  # separation, once its stems are stored: the render job it waits for
    cancel: bool = False
    progress: float = 0.0
    error: str = ""
    attempts: int = 0  # attempts started
    deaths: int = 0  # attempts whose worker died holding them
    worker: str = ""
    token: str = ""
    callback: dict[str, Any] | None = None
    callback_status: str = ""
    tracks: list[str] = field(default_factory=list)
    complete: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    # render: a parametrised operation's parameters
    params: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0
    started: float = 0.0
    finished: float = 0.0

    @property
    def song_hash(self) -> str:
        """The song this job belongs to (its id for the default model's separation)."""
        return self.song or song_of(self.id)

    def may_resubmit(self) -> bool:
        """Whether submitting the song again starts a new separation (the one rule for it)."""
        return not (self.status in (JobStatus.QUEUED, JobStatus.PROCESSING)
                    or (self.status is JobStatus.DONE and self.complete))

    @classmethod
    def from_redis(cls, job_id: str, raw: dict[str, str]) -> Job:
        """The record of `job:<job_id>` as HGETALL returned it."""
        return cls(
            id=job_id,
            status=JobStatus(raw["status"]),
            kind=Kind(raw.get("kind") or Kind.SEPARATE),
            song=raw.get("song") or song_of(job_id),
            model=raw.get("model", ""),
            rendition=raw.get("rendition", ""),
            input=raw.get("input", ""),
            parent=raw.get("parent", ""),
            awaiting=raw.get("awaiting", ""),
            cancel=raw.get("cancel") == "1",
            progress=_number(raw, "progress"),
            error=raw.get("error", ""),
            attempts=int(raw.get("attempts") or 0),
            deaths=int(raw.get("deaths") or 0),
            worker=raw.get("worker", ""),
            token=raw.get("token", ""),
            callback=json.loads(raw["callback"]) if raw.get("callback") else None,
            callback_status=raw.get("callback_status", ""),
            tracks=json.loads(raw.get("tracks") or "[]"),
            complete=raw.get("complete") == "1",
            timings=json.loads(raw.get("timings") or "{}"),
            params=json.loads(raw.get("params") or "{}"),
            created=_number(raw, "created"),
            updated=_number(raw, "updated"),
            started=_number(raw, "started"),
            finished=_number(raw, "finished"),
        )
