"""A tiny `tools/train.py` pretraining run on the embedded data, shared by the end-to-end tests."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/pretrain/hiermae_resnet18_64px_fashionmnist.py"
TRAIN = ROOT / "tools/train.py"


def small_options(
    *, iters: int, images: int, checkpoint_every: int, reconstruct_every: int = 100, batch_size: int = 4
) -> list[str]:
    """`--cfg-options` for a ResNet-18 run of `iters` iterations over the first `images` embedded images.

    Data loads in the main process, the decoder is narrow and every iteration is logged, so a run takes seconds.
    """
    return [
        f"train_dataloader.batch_size={batch_size}",
        "train_dataloader.num_workers=0",
        "train_dataloader.persistent_workers=False",
        f"train_dataloader.dataset.limit={images}",
        "model.decoder.width=32",
        "default_hooks.logger.interval=1",
        f"default_hooks.checkpoint.interval={checkpoint_every}",
        f"custom_hooks.0.interval={reconstruct_every}",
        f"train_cfg.max_iters={iters}",
    ]


def train_command(work_dir: Path, *args: str, options: list[str]) -> list[str]:
    """`tools/train.py` on the ResNet-18 pretraining config into `work_dir`, with `args` and then `options`."""
    return [sys.executable, str(TRAIN), str(CONFIG), "--work-dir", str(work_dir), *args, "--cfg-options", *options]


def logged_losses(work_dir: Path) -> dict[int, float]:
    """The training loss mmengine logged for each iteration of every run in `work_dir`."""
    records = [json.loads(line) for path in work_dir.glob("*/vis_data/scalars.json") for line in path.open()]
    return {record["iter"]: record["loss"] for record in records if "loss" in record}
