"""The default thread count of ``tganv2 train`` (issue 12 §8): one thread per core that is free now."""

from __future__ import annotations

import os

import pytest

from tganv2 import threads


@pytest.mark.parametrize(
    "idle_share, usable, expected",
    [(1.0, 2, 2), (0.5, 2, 1), (0.3, 2, 1), (0.0, 2, 1), (0.9, 2, 2), (0.74, 4, 3), (1.0, 1, 1)],
)
def test_free_cores_are_the_idle_share_of_the_machine(monkeypatch, idle_share, usable, expected):
    """/proc/stat over the window: idle jiffies / all jiffies × CPUs, rounded, within 1..usable cores."""
    samples = iter([(1000.0, 4000.0), (1000.0 + 800.0 * idle_share, 4800.0)])  # (idle, total) jiffies
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads, "usable_cpu_cores", lambda: usable)
    monkeypatch.setattr(os, "cpu_count", lambda: 4 if usable == 4 else 2)
    assert threads.free_cpu_cores(window_s=0) == expected


def test_proc_stat_is_read_on_linux():
    sample = threads._cpu_times()
    if sample is None:
        pytest.skip("no /proc/stat")
    idle, total = sample
    assert 0 <= idle <= total and total > 0
    assert 1 <= threads.free_cpu_cores(window_s=0.05) <= threads.usable_cpu_cores()
