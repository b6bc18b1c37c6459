"""Keeping freed memory in the process while a network runs on the CPU (glibc's malloc only).

glibc's malloc serves every block over its mmap threshold (at most 32 MiB) with a fresh mmap
and unmaps it on free. A released-size RoFormer chunk makes and frees activations of 100-400
MiB (49,662 tokens x 512 or 2,048 floats) hundreds of times, and the kernel zeroes every page
of each again on first touch: on a 2-core Xeon that was a third of the process's CPU time, as
system time (BENCHMARKS.md, RoFormer model stage). With mmap off for blocks and the heap not
trimmed on free, the same pages are reused. `release` hands the free pages back between songs.
Elsewhere (another C library) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger("worker")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
_LARGEST = 2**31 - 1  # mallopt takes an int


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has mallopt and malloc_trim), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018  (glibc only)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError, TypeError):
        return None
    return libc


@functools.cache
def retain() -> bool:
    """Serve large blocks from the heap and keep freed ones there, process-wide; whether the
    C library took it. Once per process: the setting stays for its life."""
    libc = _libc()
    taken = libc is not None and bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, _LARGEST))
    log.info("freed memory %s", "kept for reuse (glibc malloc: no mmap, no trim)" if taken
             else "handed back as the C library does (not glibc)")
    return taken


def release() -> None:
    """Hand the heap's free pages back to the system, as after a song."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
