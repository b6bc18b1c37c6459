"""One exception per stage that can fail, each a reason a user can read on the job; and the
ones that stop a job without failing it (cancelled, superseded, handed back). The claim loop
(worker/runtime/loop.py) maps each to how the job ends."""

import logging

log = logging.getLogger("worker")


class JobFailed(Exception):
    """The job cannot succeed; `reason` is a short code, the message says why."""

    reason = "failed"

    def __str__(self) -> str:
        return f"{self.reason}: {super().__str__()}"


class InputMissing(JobFailed):
    """The song's upload is not in the store (deleted, or never stored)."""
    reason = "input_missing"


class DecodeFailed(JobFailed):
    """The upload cannot be decoded as audio."""
    reason = "decode_failed"


class TooLong(JobFailed):
    """The audio is longer than MAX_DURATION_S."""
    reason = "too_long"


class SeparationFailed(JobFailed):
    """The model failed on this song (out of memory, a runtime error)."""
    reason = "separation_failed"


class EncodeFailed(JobFailed):
    """A track could not be encoded."""
    reason = "encode_failed"


class HandBack(Exception):
    """The job must go back to its queue (a dependency is down); it is not the song's fault."""


class Superseded(Exception):
    """The attempt is no longer current (presumed dead and replaced, or the song deleted)."""


class Cancelled(Exception):
    """A cancel was asked for the job while it ran."""


class ModelLoadError(RuntimeError):
    """The model's weights could not be loaded; the worker takes no jobs."""


def internal_error(job_id: str, error: Exception) -> str:
    """Log an unexpected exception with its traceback (shipped with the logs); the reason a
    job fails with: a deterministic bug is not retried, nor passed off as an outage."""
    log.error("song %s: internal error", job_id, exc_info=error)
    return f"internal_error: {type(error).__name__}"


def log_cause(job_id: str, error: Exception) -> None:
    """Log what caused a song's failure, with its traceback, when something did."""
    if error.__cause__ is not None:
        log.warning("song %s: %s; caused by", job_id, error, exc_info=error.__cause__)
