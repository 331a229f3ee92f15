"""A run killed with SIGKILL and resumed reproduces the uninterrupted run's losses (data order, masks, flips)."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/pretrain/hiermae_resnet18_64px_fashionmnist.py"
OPTIONS = [
    "train_dataloader.batch_size=4",
    "train_dataloader.num_workers=0",
    "train_dataloader.persistent_workers=False",
    "train_dataloader.dataset.limit=40",  # 10 iterations an epoch: the kill lands mid-epoch, the run crosses one
    "model.decoder.width=32",
    "default_hooks.checkpoint.interval=3",
    "default_hooks.logger.interval=1",
    "custom_hooks.0.interval=100",
    "train_cfg.max_iters=14",
]


def command(work_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "tools/train.py"), str(CONFIG), "--work-dir", str(work_dir), *extra,
            "--cfg-options", *OPTIONS]  # fmt: skip


def logged_losses(work_dir: Path) -> dict[int, float]:
    losses = {}
    for scalars in work_dir.glob("*/vis_data/scalars.json"):
        for line in scalars.read_text().splitlines():
            record = json.loads(line)
            if "loss" in record:
                losses[record["iter"]] = record["loss"]
    return losses


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
