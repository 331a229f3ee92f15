"""A run killed with SIGKILL and resumed reproduces the uninterrupted run's losses (data order, masks, flips)."""

import signal
import subprocess
from pathlib import Path

import pytest

from small_training import ROOT, logged_losses, small_options, train_command

# 40 images at batch 4 are 10 iterations an epoch: the kill lands mid-epoch and the run crosses an epoch boundary.
OPTIONS = small_options(iters=14, images=40, checkpoint_every=3)


def command(work_dir: Path, *extra: str) -> list[str]:
    return train_command(work_dir, *extra, options=OPTIONS)


@pytest.mark.slow
def test_killed_and_resumed_run_matches_the_uninterrupted_run(tmp_path):
    reference = subprocess.run(command(tmp_path / "reference"), cwd=ROOT, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = logged_losses(tmp_path / "reference")
    assert sorted(expected) == list(range(1, 15))

    victim = subprocess.Popen(
        command(tmp_path / "killed"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in victim.stdout:
        if "Iter(train) [ 8/14]" in line or "Iter(train) [8/14]" in line:
            victim.send_signal(signal.SIGKILL)
            break
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert (tmp_path / "killed" / "iter_6.pth").exists() and not (tmp_path / "killed" / "iter_9.pth").exists()

    resumed = subprocess.run(command(tmp_path / "killed", "--resume"), cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed epoch: 0, iter: 6" in resumed.stdout + resumed.stderr
    after = {i: loss for i, loss in logged_losses(tmp_path / "killed").items() if i > 6}
    difference = max(abs(after[i] - expected[i]) for i in range(7, 15))
    print(f"max loss difference after resume over iterations 7-14: {difference:.3g}")
    assert difference <= 1e-5
