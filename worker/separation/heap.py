"""Where freed memory goes while a network runs (glibc's malloc only): back to the system at
once, or kept in the process for reuse.

`map_large_blocks`, for every model: a stem's stretch, its encoder's copy, the overlap-add's
rest and a Demucs segment's mid-size activations (1-32 MiB) outlive one another in no set
order. Served from the heap, as glibc's rising mmap threshold puts them after the first large
free, the long-lived ones pin the heap around the freed ones, and the heap grew segment after
segment: a demucs_unittest worker's peak was 8-13 % higher after a 1,800 s song than after a
60 s one. Each in a mapping of its own, freed memory goes back whole, and the peak stays within
3-4 % of the first segment's, at the same CPU time (BENCHMARKS.md, memory by song length).

`retain`, for a RoFormer on the CPU: glibc's malloc serves every block over its mmap threshold
(at most 32 MiB) with a fresh mmap and unmaps it on free. A released-size RoFormer chunk makes
and frees activations of 100-400 MiB (49,662 tokens x 512 or 2,048 floats) hundreds of times,
and the kernel zeroes every page of each again on first touch: on a 2-core Xeon that was a third
of the process's CPU time, as system time (BENCHMARKS.md, RoFormer model stage). With mmap off
for blocks and the heap not trimmed on free, the same pages are reused. `release` hands the free
pages back between songs.

Elsewhere (another C library) each is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger("worker")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's malloc.h
_LARGEST = 2**31 - 1  # mallopt takes an int
LARGE_BLOCK = 2**20  # bytes: a stretch's stem is about 10 MiB, a segment's small tensors KiBs


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
def map_large_blocks() -> bool:
    """Serve every block of LARGE_BLOCK bytes or more with a mapping of its own, unmapped on
    free, process-wide; whether the C library took it. A fixed threshold also stops glibc from
    raising it; the heap's top is trimmed past twice that, as glibc pairs the two."""
    libc = _libc()
    taken = libc is not None and bool(libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, 2 * LARGE_BLOCK))
    if taken:
        log.info("blocks of %d KiB or more mapped apart and handed back on free",
                 LARGE_BLOCK // 1024)
    return taken


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
