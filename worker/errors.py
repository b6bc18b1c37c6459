"""One exception per stage that can fail; each becomes a reason a user can read on the job."""


class JobFailed(Exception):
    """The job cannot succeed; `reason` is a short code, the message says why."""

    reason = "failed"

    def __str__(self) -> str:
        return f"{self.reason}: {super().__str__()}"


class InputMissing(JobFailed):
    reason = "input_missing"


class DecodeFailed(JobFailed):
    reason = "decode_failed"


class TooLong(JobFailed):
    reason = "too_long"


class SeparationFailed(JobFailed):
    reason = "separation_failed"


class EncodeFailed(JobFailed):
    reason = "encode_failed"


class ModelLoadError(RuntimeError):
    """The model's weights could not be loaded; the worker takes no jobs."""
