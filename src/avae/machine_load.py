"""How busy this machine is, read without importing torch (the OpenMP runtime it loads reads its
settings once, when it starts): the cores this process may use and those other work keeps busy.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

QUIET_SHARE = 0.5  # share of the cores other work may keep busy for timings to count; above it rules decide


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, and its cgroup's CPU quota (containers, SLURM)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def cgroup_cpu_quota() -> float | None:
    """CPUs' worth of time the cgroup may use (cgroup v2 cpu.max, or v1's CFS quota); None: no limit."""
    for path, parse in ((Path("/sys/fs/cgroup/cpu.max"), lambda t: t.split()),
                        (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), lambda t: [t.strip(), _read(
                            Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))])):
        text = _read(path)
        if text is None:
            continue
        quota, period = (parse(text) + [None])[:2]
        try:
            quota, period = float(quota), float(period)
        except (TypeError, ValueError):  # "max": no limit
            return None
        return quota / period if quota > 0 and period > 0 else None
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def busy_cores(window: float = 0.1) -> float:
    """Cores that other processes keep busy now: the machine's busy CPU time over a short window
    (/proc/stat) less this process's own. The load average, which lags a minute behind, stands in
    where /proc/stat is missing."""
    first = _busy_seconds()
    if first is None:
        return load_average()
    own, start = sum(os.times()[:2]), time.perf_counter()
    time.sleep(window)
    others = (_busy_seconds() - first) - (sum(os.times()[:2]) - own)
    return max(0.0, others / (time.perf_counter() - start))


def _busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (/proc/stat's first line), or None."""
    line = (_read(Path("/proc/stat")) or "").partition("\n")[0].split()
    if not line or line[0] != "cpu":
        return None
    ticks = [int(v) for v in line[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    """The 1-minute load average (0 where the system does not report one)."""
    return getattr(os, "getloadavg", lambda: (0.0,))()[0]


def openmp_waits_passively() -> bool:
    """Where other work keeps more than QUIET_SHARE of the cores busy, have OpenMP's threads sleep while
    they wait at a barrier instead of spinning (OMP_WAIT_POLICY=PASSIVE), so that the CPU goes to the
    thread they wait for: beside 2 busy processes on 2 cores, an AVAE pinned to 2 threads took 72 s
    against 99 s spinning (benchmarks/BENCHMARKS.md). Only before torch is imported, and never over the
    user's own OMP_WAIT_POLICY; returns whether it set it."""
    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return False
    if busy_cores() <= QUIET_SHARE * available_cores():
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
