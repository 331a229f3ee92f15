"""mmengine hooks: portable checkpoints, reconstruction PNGs during training, and a closing summary of the run."""

import logging
import math
from pathlib import Path

import torch
from mmengine.dataset import pseudo_collate
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import HOOKS

from hiermae.checkpoints import (
    MODEL_CONFIG_KEY,
    SETTINGS_KEY,
    NothingToResumeError,
    checkpoint_to_resume,
    compact,
    non_finite_tensors,
    plain_data,
    read_pointer,
    run_settings,
    write_pointer,
)
from hiermae.engine.visualization import save_reconstruction_grid


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if is_model_wrapper(model) else model


def last_checkpoint(runner) -> str | None:  # noqa: ANN001
    """The path of the latest save `last_checkpoint` records, if any."""
    path = read_pointer(runner.work_dir)
    return None if path is None else str(path)


def last_good_checkpoint(runner) -> str | None:  # noqa: ANN001
    """The checkpoint `--resume` would continue from (the newest intact and finite one), if any."""
    try:
        return str(checkpoint_to_resume(runner.work_dir))
    except NothingToResumeError:
        return None


def to_unit_range(images: torch.Tensor, preprocessor: torch.nn.Module) -> torch.Tensor:
    """Undo the data preprocessor's normalisation and scale pixels to [0, 1]."""
    if getattr(preprocessor, "_enable_normalize", False):
        images = images * preprocessor.std + preprocessor.mean
    return images / 255.0


@HOOKS.register_module()
class PortableCheckpointHook(CheckpointHook):
    """mmengine's `CheckpointHook`, writing checkpoints that another machine or folder can use safely.

    - `meta['model_cfg']` holds the run's model config as plain data, so readers never execute config text, and
      `meta['run_settings']` the model and data settings a resume must keep (`hiermae.checkpoints.settings`).
    - `last_checkpoint` names the latest save relative to the work dir and is replaced by rename, so a copied
      work dir resumes from its own files and a kill never leaves the pointer empty.
    - Only finite checkpoints are written: a NaN or infinite tensor stops the run with `FloatingPointError` before
      the write, and before mmengine's rotation (`max_keep_ckpts`, which deletes the oldest checkpoint before it
      saves the next) could delete a finite one.
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:  # noqa: ANN001
        refuse_non_finite(runner, checkpoint, "the checkpoint")  # every save path, the best-checkpoint one too
        meta = checkpoint.setdefault("meta", {})
        try:
            meta[MODEL_CONFIG_KEY] = plain_data(runner.cfg.get("model") or {})
            meta[SETTINGS_KEY] = run_settings(runner.cfg)
        except TypeError as error:  # a config holding objects: readers fall back to the config text
            print_log(f"model config not stored as data: {error}", "current", logging.WARNING)

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:  # noqa: ANN001
        """Refuse non-finite weights or optimiser state before the rotation deletes anything; mmengine 0.10.7 then
        saves and writes the absolute pointer here, which is rewritten relative, atomically."""
        state = {"state_dict": unwrap(runner.model).state_dict(), "optimizer": runner.optim_wrapper.state_dict()}
        refuse_non_finite(runner, state, f"iteration {step}'s weights or optimiser state")
        super()._save_checkpoint_with_step(runner, step, meta)
        if is_main_process() and self.last_ckpt is not None:
            write_pointer(runner.work_dir, self.last_ckpt)


def refuse_non_finite(runner, tensors: object, what: str) -> None:  # noqa: ANN001
    """Raise FloatingPointError, naming the last good checkpoint, when `tensors` hold a NaN or an infinity."""
    bad = non_finite_tensors(tensors)
    if bad:
        raise FloatingPointError(
            f"not saved: {what} holds NaN or infinite values in {len(bad)} tensors [{compact(bad, 3)}]; stopping. "
            f"Last good checkpoint: {last_good_checkpoint(runner) or 'none was saved'}"
        )


def first_items(dataset, count: int) -> list:  # noqa: ANN001
    """Up to `count` first items of `dataset`, fewer when it has fewer: a streaming set's length (`ImageShards`:
    unbounded) says nothing about how many items an index reaches, so an IndexError ends the list too."""
    items = []
    for index in range(min(count, len(dataset))):
        try:
            items.append(dataset[index])
        except IndexError:
            break
    return items


@HOOKS.register_module()
class ReconstructionHook(Hook):
    """Every `interval` iterations and at the end, save a reconstruction grid of the first training images.

    Images of other than 1 or 3 channels show the channels `bands` as red, green, blue (default: the first three;
    `hiermae.engine.visualization`).
    The same images and the same masks (seeded by index, iteration 0) are used each time, so successive PNGs
    show progress. Grids go to `<work_dir>/reconstructions/iter_<n>.png`. The hook runs after the checkpoint hook
    (VERY_LOW, 90), so a failure here never comes before the save of the same iteration, and before the summary
    (LOWEST, 100), which names the last grid.
    """

    priority = 95

    def __init__(self, interval: int = 100, num_images: int = 6, bands: tuple[int, int, int] | None = None) -> None:
        self.interval = interval
        self.num_images = num_images
        self.bands = None if bands is None else tuple(bands)
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
        samples = first_items(dataset, self.num_images)
        if not samples:
            print_log("reconstruction grid skipped: the training data set has no item to show", "current")
            return None
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
            self.bands,
        )
        runner.logger.info(f"reconstruction grid: {path}")
        return self.last_path


@HOOKS.register_module()
class TrainingSummaryHook(Hook):
    """At the end of training, log the mean loss of the first and last `window` iterations and the outputs.

    It runs last (after the final save and the final reconstruction grid), so it names both."""

    priority = "LOWEST"

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
    """Stop the run at the first iteration whose loss, gradient norm or weights hold a NaN or an infinity.

    A finite loss does not make a finite update: a NaN gradient norm turns every weight NaN in the same step. The
    hook runs after the optimiser step and before `CheckpointHook` (higher priority), so no save stores the
    damaged weights, and it names the checkpoint `--resume` would continue from. The gradient norm is the one
    mmengine's optimiser wrapper logs when it clips (`train/grad_norm`); under `AmpOptimWrapper`'s loss scaling an
    infinite norm is expected (that step is skipped and the scale lowered), so there only the weights count.
    """

    priority = "ABOVE_NORMAL"

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:  # noqa: ANN001
        problems = []
        loss = (outputs or {}).get("loss")
        if loss is not None and not torch.isfinite(torch.as_tensor(loss)).all():
            problems.append(f"non-finite loss {float(loss)}")
        grad_norm = runner.message_hub.log_scalars.get("train/grad_norm")
        if grad_norm is not None and not isinstance(runner.optim_wrapper, AmpOptimWrapper):
            if not math.isfinite(grad_norm.current()):
                problems.append(f"non-finite gradient norm {grad_norm.current()}")
        bad = non_finite_tensors(unwrap(runner.model).state_dict())
        if bad:
            problems.append(f"NaN or infinite weights in {len(bad)} tensors [{compact(bad, 3)}]")
        if problems:
            last = last_good_checkpoint(runner) or "none was saved yet"
            raise FloatingPointError(
                f"{'; '.join(problems)} at iteration {runner.iter + 1}; stopping before any checkpoint stores them. "
                f"Last good checkpoint: {last} (resume with --resume)"
            )
