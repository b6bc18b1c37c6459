"""worker/separation/heap.py: freed activations are reused without the kernel's page faults,
and handed back between songs."""

from __future__ import annotations

import resource

import pytest
import torch

from worker.separation import heap

BLOCK = 2**24  # floats: 64 MiB, above glibc's largest mmap threshold (32 MiB)


def _faults_touching_a_block() -> int:
    """Minor page faults of allocating a fresh 64 MiB tensor and writing it once."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(BLOCK).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_a_freed_block_is_reused_then_handed_back() -> None:
    if not heap.retain():
        pytest.skip("not glibc: the C library's own behaviour stays")
    _faults_touching_a_block()  # the heap grows to hold one block once
    pages = BLOCK * 4 // resource.getpagesize()
    assert _faults_touching_a_block() < pages // 20  # reused: no page zeroed again
    heap.release()
    assert _faults_touching_a_block() > pages // 2  # the pages went back to the system
