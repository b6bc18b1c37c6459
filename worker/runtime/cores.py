"""How many CPU cores this process may really use."""

import os


def usable_cores() -> int:
    """Cores this process may run on: the container's CPU quota, not the host's core count."""
    cores = len(os.sched_getaffinity(0))
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)
