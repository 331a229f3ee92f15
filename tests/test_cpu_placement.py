"""The CPU-placement probe that labels 2-thread benchmark timings: its workers run where they are pinned, it
gives a ratio wherever the process may use two CPUs, and none where it may use one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cpu_placement import PinnedWorker, handoff_ratio

ROOT = Path(__file__).resolve().parents[1]


def test_a_pinned_worker_runs_its_tasks_on_its_cpu_only() -> None:
    cpu = max(os.sched_getaffinity(0))
    worker = PinnedWorker(cpu)
    seen = []
    try:
        seconds = worker.run(lambda: seen.append(os.sched_getaffinity(0)))
    finally:
        worker.stop()
    assert seen == [{cpu}]
    assert seconds >= 0.0
    assert not worker.thread.is_alive()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_the_handoff_ratio_is_a_time_ratio_and_leaves_torch_threads_alone() -> None:
    import torch

    threads = torch.get_num_threads()
    ratio = handoff_ratio(mib=1, rounds=5)
    assert ratio is not None and 0.2 < ratio < 50.0
    assert torch.get_num_threads() == threads


def test_a_process_on_one_cpu_gets_no_ratio() -> None:
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from benchmarks.cpu_placement import handoff_ratio; print(handoff_ratio(mib=1, rounds=2))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "None"
