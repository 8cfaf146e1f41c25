"""How much CPU this process may use: what sizing decisions (the SQLite writer's threads,
delivery giving way to the chargers) must go by, rather than the host's core count."""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> float:
    """The CPUs this process may run on: its affinity, capped by its cgroup's CPU quota
    (``cpu.max``, cgroup v2: a container limited to one CPU sees every host CPU in its
    affinity). Fractional under a quota of part of a CPU."""
    cpus: float = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cpus = min(cpus, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return cpus
