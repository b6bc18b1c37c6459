"""worker/separation/heap.py: large blocks go back to the system on free, whatever outlives
them; or, for a RoFormer on the CPU, freed activations are reused without the kernel's page
faults and handed back between songs. Run in fresh processes: the settings are process-wide,
and a fresh process is what a worker is."""

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


# In the child: what a segment does to the heap. Blocks of 4 MiB (a stem's stretch, a segment's
# mid-size tensor) are made with blocks of 512 KiB (under the threshold) between them that
# outlive them (a sink's queued frames, the overlap-add's rest), then the large ones are freed.
# One earlier free of 8 MiB raises glibc's own threshold past 4 MiB, as the first segment does.
FRAGMENTS = textwrap.dedent("""
    import json, sys, torch
    from worker.separation import heap
    def resident_mb():
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmRSS"))
        return int(line.split()[1]) / 1024
    mapped = heap.map_large_blocks() if sys.argv[1] == "mapped" else False
    torch.ones(2**21)  # 8 MiB, freed at once
    before = resident_mb()
    large, small = [], []
    for _ in range(64):
        large.append(torch.ones(2**20))  # 4 MiB
        small.append(torch.ones(2**17))  # 512 KiB
    held = resident_mb()
    large.clear()
    print(json.dumps({"mapped": mapped, "held": held - before, "after": resident_mb() - before}))
""")


def fragments(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", FRAGMENTS, mode], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout)


def test_large_blocks_go_back_whole_though_small_ones_outlive_them() -> None:
    mapped = fragments("mapped")
    if not mapped["mapped"]:
        pytest.skip("not glibc: the C library's own behaviour stays")
    assert mapped["held"] > 280  # 64 blocks of 4 MiB and 64 of 512 KiB were resident
    # What stays is the 32 MiB of small blocks still held.
    assert mapped["after"] < 40, f"{mapped['after']:.0f} MB still resident after the free"
    # The same without the setting: the small blocks pin the heap, nothing goes back.
    default = fragments("default")
    assert default["after"] > 250, default
