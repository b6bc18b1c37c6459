"""The progress callback every stage of a job reports through."""

from collections.abc import Callable

# Called with the fraction of the work done, 0 to 1; it may raise to stop the work (a cancel,
# or an attempt that is no longer current).
Progress = Callable[[float], None]
