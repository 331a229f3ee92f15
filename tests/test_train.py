"""tools/train.py end to end on the embedded data: train, reconstruct, checkpoint, resume."""

import subprocess
from pathlib import Path

import pytest
import torch

from small_training import ROOT, small_options, train_command


def train(work_dir: Path, *args: str, iters: int, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    small = small_options(iters=iters, images=64, checkpoint_every=2, reconstruct_every=2)
    command = train_command(work_dir, *args, options=[*small, *options])
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_train_writes_checkpoints_reconstructions_and_resumes(tmp_path):
    first = train(tmp_path, iters=4)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "iter_4.pth").exists()
    assert (tmp_path / "reconstructions" / "iter_2.png").exists()
    assert (tmp_path / "reconstructions" / "final.png").exists()
    assert "summary: loss at start" in first.stdout + first.stderr
    assert list(tmp_path.glob("*/vis_data/events.out.tfevents.*")), "no tensorboard events written"

    resumed = train(tmp_path, "--resume", iters=6)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert "resumed epoch: 0, iter: 4" in log
    assert "Iter(train) [5/6]" in log and "Iter(train) [1/6]" not in log
    checkpoint = torch.load(tmp_path / "iter_6.pth", weights_only=False)
    assert checkpoint["meta"]["iter"] == 6
    assert any(key.startswith("encoder.model.layer4") for key in checkpoint["state_dict"])


def test_resume_from_an_explicit_checkpoint_with_mixed_precision(tmp_path):
    assert train(tmp_path / "a", iters=2).returncode == 0
    resumed = train(tmp_path / "b", "--resume", str(tmp_path / "a" / "iter_2.pth"), "--amp", iters=3)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert "resumed epoch: 0, iter: 2" in log and "Iter(train) [3/3]" in log


def test_unknown_backbone_in_a_config_is_named(tmp_path):
    result = train(tmp_path, iters=1, options=("model.backbone=alexnet",))
    assert result.returncode != 0 and "unsupported backbone 'alexnet'" in result.stderr


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    poisoned = train(tmp_path, iters=4, options=("optim_wrapper.optimizer.lr=1e30",))
    log = poisoned.stdout + poisoned.stderr
    assert poisoned.returncode != 0 and "non-finite loss" in log and "at iteration" in log
    pointer = tmp_path / "last_checkpoint"
    if pointer.exists():
        checkpoint = torch.load(tmp_path / pointer.read_text().strip(), weights_only=False)  # relative to the work dir
        assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


@pytest.mark.parametrize("config", sorted((ROOT / "configs/pretrain").glob("*.py")), ids=lambda p: p.stem)
def test_every_pretraining_config_builds_its_model_and_data(config):
    from mmengine.config import Config
    from mmengine.registry import DATASETS, MODELS

    import hiermae  # noqa: F401  (registers the model and the datasets)

    cfg = Config.fromfile(str(config))
    model = MODELS.build(cfg.model)
    assert model.input_size == cfg.train_dataloader.dataset.image_size
    if cfg.train_dataloader.dataset.type == "FashionMNIST":
        item = DATASETS.build({**cfg.train_dataloader.dataset, "limit": 2})[0]
        assert item["inputs"].shape == (model.in_chans, model.input_size, model.input_size)
