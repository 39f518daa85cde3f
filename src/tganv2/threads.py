"""The default CPU thread count of ``tganv2 train``: the cores that are free now, not all of them.

On a machine where other jobs hold cores, torch's default (one thread per core) puts a thread on a busy
core; every parallel region then waits for that thread, so a step runs at the speed of the slowest core
(about 2x slower on 2 cores with one busy, measured in docs/benchmarks.md §4). ``free_cpu_cores`` samples
``/proc/stat`` over a short window and counts the idle share of the cores this process may use.
"""

from __future__ import annotations

import os
import time

__all__ = ["usable_cpu_cores", "free_cpu_cores"]


def usable_cpu_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(idle, total) jiffies of all CPUs from ``/proc/stat``; None where there is no such file."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return idle, sum(fields[:8])


def free_cpu_cores(window_s: float = 0.5) -> int:
    """The number of usable cores that were idle over the last ``window_s`` seconds (at least 1)."""
    usable = usable_cpu_cores()
    before = _cpu_times()
    if before is None:
        return usable
    time.sleep(window_s)
    after = _cpu_times()
    total = after[1] - before[1]
    if total <= 0:
        return usable
    idle_cores = (after[0] - before[0]) / total * (os.cpu_count() or usable)
    return max(1, min(usable, int(idle_cores + 0.5)))
