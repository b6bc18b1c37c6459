"""worker/separation/heap.py: freed activations are reused without the kernel's page faults,
and handed back between songs. Run in a fresh process: the setting is process-wide, and a
fresh process is what a worker is."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# In the child: the minor page faults of allocating a fresh 64 MiB tensor (above glibc's largest
# mmap threshold, 32 MiB) and writing it once, round after round. torch asks posix_memalign for
# it, so the first rounds are carved from the top of the heap until the heap has grown to hold
# one at the alignment asked (a few rounds); from then on the freed block is reused.
CHILD = textwrap.dedent("""
    import json, resource, torch
    from worker.separation import heap
    BLOCK = 2**24
    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(BLOCK).fill_(1.0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    retained = heap.retain()
    rounds = [faults() for _ in range(40)]
    heap.release()
    print(json.dumps({"retained": retained, "rounds": rounds, "after_release": faults(),
                      "pages": BLOCK * 4 // resource.getpagesize()}))
""")


def test_a_freed_block_is_reused_then_handed_back() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120)
    result = json.loads(done.stdout)
    if not result["retained"]:
        pytest.skip("not glibc: the C library's own behaviour stays")
    pages, rounds = result["pages"], result["rounds"]
    reused = [n < pages // 20 for n in rounds]  # no page zeroed again
    assert all(reused[-10:]), f"the freed block is not reused: faults per round {rounds}"
    assert result["after_release"] > pages // 2  # the pages went back to the system
