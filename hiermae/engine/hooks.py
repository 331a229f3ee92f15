"""mmengine hooks: portable checkpoints, reconstruction PNGs during training, and a closing summary of the run."""

import logging
from pathlib import Path

import torch
from mmengine.dataset import pseudo_collate
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from hiermae.checkpoints import MODEL_CONFIG_KEY, plain_data, read_pointer, write_pointer
from hiermae.engine.visualization import save_reconstruction_grid


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if is_model_wrapper(model) else model


def last_checkpoint(runner) -> str | None:  # noqa: ANN001
    """The path of the latest save `last_checkpoint` records, if any."""
    path = read_pointer(runner.work_dir)
    return None if path is None else str(path)


def to_unit_range(images: torch.Tensor, preprocessor: torch.nn.Module) -> torch.Tensor:
    """Undo the data preprocessor's normalisation and scale pixels to [0, 1]."""
    if getattr(preprocessor, "_enable_normalize", False):
        images = images * preprocessor.std + preprocessor.mean
    return images / 255.0


@HOOKS.register_module()
class PortableCheckpointHook(CheckpointHook):
    """mmengine's `CheckpointHook`, writing checkpoints that another machine or folder can use safely.

    - `meta['model_cfg']` holds the run's model config as plain data, so readers never execute config text.
    - `last_checkpoint` names the latest save relative to the work dir and is replaced by rename, so a copied
      work dir resumes from its own files and a kill never leaves the pointer empty.
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:  # noqa: ANN001
        try:
            checkpoint.setdefault("meta", {})[MODEL_CONFIG_KEY] = plain_data(runner.cfg.get("model") or {})
        except TypeError as error:  # a config holding objects: readers fall back to the config text
            print_log(f"model config not stored as data: {error}", "current", logging.WARNING)

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:  # noqa: ANN001
        """mmengine 0.10.7 saves and then writes the absolute pointer here; rewrite it relative, atomically."""
        super()._save_checkpoint_with_step(runner, step, meta)
        if is_main_process() and self.last_ckpt is not None:
            write_pointer(runner.work_dir, self.last_ckpt)


@HOOKS.register_module()
class ReconstructionHook(Hook):
    """Every `interval` iterations and at the end, save a reconstruction grid of the first training images.

    The same images and the same masks (seeded by index, iteration 0) are used each time, so successive PNGs
    show progress. Grids go to `<work_dir>/reconstructions/iter_<n>.png`.
    """

    priority = "LOW"

    def __init__(self, interval: int = 100, num_images: int = 6) -> None:
        self.interval = interval
        self.num_images = num_images
        self.last_path: Path | None = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:  # noqa: ANN001
        if self.every_n_train_iters(runner, self.interval):
            self.save(runner, f"iter_{runner.iter + 1}")

    def after_train(self, runner) -> None:  # noqa: ANN001
        self.save(runner, "final")

    @torch.no_grad()
    def save(self, runner, tag: str) -> Path | None:  # noqa: ANN001
        model = unwrap(runner.model)
        dataset = runner.train_dataloader.dataset
        samples = [dataset[i] for i in range(min(self.num_images, len(dataset)))]
        data = model.data_preprocessor(pseudo_collate(samples), training=False)
        images = data["inputs"]
        seeds = torch.tensor([model.mask_seed + i for i in range(len(samples))])
        was_training = model.training
        model.eval()
        try:
            output = model(images, mode="tensor", visible=model.draw_mask(images, seeds))
        finally:
            model.train(was_training)
        if output["pred"] is None:
            print_log("reconstruction grid skipped: this target has no pixel-space prediction", "current")
            return None
        preprocessor = model.data_preprocessor
        path = Path(runner.work_dir) / "reconstructions" / f"{tag}.png"
        self.last_path = save_reconstruction_grid(
            path,
            to_unit_range(images, preprocessor),
            to_unit_range(output["pred"], preprocessor),
            output["visible"],
            model.unit,
        )
        runner.logger.info(f"reconstruction grid: {path}")
        return self.last_path


@HOOKS.register_module()
class TrainingSummaryHook(Hook):
    """At the end of training, log the mean loss of the first and last `window` iterations and the outputs."""

    priority = "VERY_LOW"

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.losses: list[float] = []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:  # noqa: ANN001
        if outputs and "loss" in outputs:
            self.losses.append(float(outputs["loss"].detach()))

    def loss_means(self) -> tuple[float, float, int]:
        """Mean loss of the first and of the last `window` iterations of this run, and the window used."""
        count = min(self.window, len(self.losses))
        return sum(self.losses[:count]) / count, sum(self.losses[-count:]) / count, count

    def after_train(self, runner) -> None:  # noqa: ANN001
        if not self.losses:
            return
        first, last, count = self.loss_means()
        checkpoint = last_checkpoint(runner) or "(none saved)"
        grids = sorted((Path(runner.work_dir) / "reconstructions").glob("*.png"), key=lambda p: p.stat().st_mtime)
        runner.logger.info(
            f"summary: loss at start {first:.4f}, at end {last:.4f} (means of the first and last {count} iterations "
            f"of this run); checkpoint {checkpoint}; reconstruction {grids[-1] if grids else '(none)'}"
        )


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop the run at the first NaN or infinite loss, before a checkpoint could store the damaged weights.

    It runs before `CheckpointHook` (higher priority), so the last checkpoint on disk is the last good one.
    """

    priority = "ABOVE_NORMAL"

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:  # noqa: ANN001
        loss = (outputs or {}).get("loss")
        if loss is not None and not torch.isfinite(torch.as_tensor(loss)).all():
            last = last_checkpoint(runner) or "none was saved yet"
            raise FloatingPointError(
                f"non-finite loss {float(loss)} at iteration {runner.iter + 1}; stopping. "
                f"Last good checkpoint: {last} (resume with --resume)"
            )
