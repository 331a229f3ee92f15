"""Fine-tuning a whole timm classifier from an export, a pretraining checkpoint or random init, as the MIM papers
fine-tune (MAE, He et al. 2022; SimMIM, Xie et al. 2022; SparK, Tian et al. 2023; ConvNeXt V2, Woo et al. 2023).

AdamW with layer-wise lr decay (`layer_decay.py`), linear warm-up then cosine decay to zero, label smoothing,
flips (random-resized crops and drop path where a recipe asks), bf16 autocast on the CPU (fp16 with loss scaling
on a GPU). The
schedule is fixed in epochs and ends at lr 0, so the training loss flattens by construction; `TrainingCurveHook`
records it epoch by epoch so a report can show it. Everything runs through an mmengine Runner, from Python
(`finetune`), from `tools/finetune.py`, or from a config in `configs/finetune/` with `tools/train.py`.
"""

import json
import os
import time
from collections.abc import Sized
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS, MODELS
from mmengine.runner import Runner

from hiermae.backbones import encoder_family
from hiermae.downstream import layer_decay, probe_head  # noqa: F401  (register the optimiser constructor, the hook)
from hiermae.downstream.accuracy import predictions
from hiermae.downstream.checkpoints import read_encoder_weights
from hiermae.downstream.classification_data import FASHION_MNIST_NORMALIZATION, ClassificationData
from hiermae.downstream.key_report import KeyReport
from hiermae.downstream.pretrained import DEFAULT_INPUT_SIZE, load_backbone
from hiermae.engine import enable_amp

RUN_RESULTS = ("epoch_*.pth", "last_checkpoint", "curve.json")  # what a saving run writes into its work dir


@dataclass(frozen=True)
class FineTuneRecipe:
    """The fine-tuning protocol; every field is one of its hyper-parameters.

    lr = `base_lr` × `batch_size` / 256 for the head (MAE's scaling rule); `base_lr` None takes the family's
    (`finetune_base_lr`, the same for every initialisation: `head_base_lr`), and `layer_decay` None the family's
    rate for pretrained weights and none for random init (`layer_decay.layer_decay_rate`). Validation runs every
    `val_interval` epochs and after the last one (None: only after the last). With `probe_head` the head of
    pretrained weights starts as a linear probe of them (LP-FT, `probe_head.py`; random init keeps a random head),
    so that fine-tuning starts where the probe ends. The families' lrs, whole images (no random crops; flips only)
    without drop path, and LP-FT were chosen on the validation split of 1000-label Fashion-MNIST
    (docs/results/finetune-diagnosis-cpu.md): crops of 35-100 % of the area and drop path 0.1 cost every random init
    measured 3-12 points there, and without LP-FT the pretrained ViT-T ended below its own probe.
    """

    epochs: int = 30
    batch_size: int = 64
    base_lr: float | None = None
    weight_decay: float = 0.05
    layer_decay: float | None = None
    warmup_epochs: int = 3
    label_smoothing: float = 0.1
    drop_path: float = 0.0
    crop_scale: tuple[float, float] = (1.0, 1.0)
    amp: bool = True
    val_interval: int | None = None
    probe_head: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"need epochs ≥ 1 and 0 ≤ warmup_epochs < epochs, got {self.epochs}, {self.warmup_epochs}")
        if self.base_lr is not None and not self.base_lr > 0.0:
            raise ValueError(f"base_lr must be positive, got {self.base_lr}")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if not 0.0 <= self.label_smoothing < 1.0 or not 0.0 <= self.drop_path < 1.0:
            raise ValueError("label_smoothing and drop_path must be in [0, 1)")
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low ≤ high ≤ 1, got {self.crop_scale}")

    def as_dict(self) -> dict:
        return asdict(self)

    def head_base_lr(self, backbone: str) -> float:
        """The head's lr per 256 images for `backbone`: `base_lr`, else its family's."""
        return self.base_lr if self.base_lr is not None else encoder_family(backbone).finetune_base_lr


@MODELS.register_module()
class ImageClassifier(BaseModel):
    """A timm classifier (timm's own pooling and head, with the family's `classifier_options`) trained end to end
    with label-smoothed cross-entropy.

    Its backbone comes from `checkpoint` (a pretraining checkpoint or a timm export, strict-loaded except the
    head; it names its backbone and size) or is randomly initialised (`checkpoint=None`, `backbone` required).
    It reads `in_chans` channels (default: the checkpoint's, else 3); a stem of another count is adapted.
    """

    def __init__(
        self,
        backbone: str | None = None,
        checkpoint: str | None = None,
        num_classes: int = 10,
        input_size: int | None = None,
        drop_path_rate: float = 0.0,
        label_smoothing: float = 0.0,
        trust_checkpoint: bool = False,
        in_chans: int | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        preprocessor = data_preprocessor or dict(type="ImgDataPreprocessor", **FASHION_MNIST_NORMALIZATION)
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)
        loaded = load_backbone(
            checkpoint, backbone, input_size, num_classes, trust=trust_checkpoint, in_chans=in_chans,
            drop_path_rate=drop_path_rate,
        )  # fmt: skip
        self.network = loaded.model
        # The weights are loaded (or timm initialised them): mmengine's Runner calls `init_weights()` of every child
        # that has one, and timm's ResNet / ViT / Swin would re-initialise themselves.
        self.network.is_init = True
        self.backbone = loaded.name
        self.pretrained = checkpoint is not None
        self.input_size = loaded.input_size
        self.in_chans = loaded.in_chans
        self.load_report: KeyReport | None = loaded.report
        self.label_smoothing = label_smoothing

    def forward(self, inputs: torch.Tensor, data_samples: dict | None = None, mode: str = "tensor"):
        logits = self.network(inputs)
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, data_samples["label"], label_smoothing=self.label_smoothing)}
        if mode == "predict":
            return predictions(logits, data_samples["label"], data_samples.get("index"))
        if mode == "tensor":
            return logits
        raise ValueError(f"unknown mode {mode!r}; use 'loss', 'predict' or 'tensor'")


@HOOKS.register_module()
class TrainingCurveHook(Hook):
    """Per epoch: mean training loss, the head's learning rate and training seconds so far; after a validation,
    its top-1 and the number of distinct images it scored. The curve is rewritten to `<work_dir>/curve.json` after
    every epoch (by rename)."""

    priority = "LOW"

    def __init__(self) -> None:
        self.curve: list[dict[str, float]] = []
        self.losses: list[float] = []
        self.seconds = 0.0
        self.started = 0.0

    def before_train_epoch(self, runner) -> None:  # noqa: ANN001
        self.started, self.losses = time.monotonic(), []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:  # noqa: ANN001
        self.losses.append(float(torch.as_tensor(outputs["loss"]).detach()))

    def after_train_epoch(self, runner) -> None:  # noqa: ANN001
        self.seconds += time.monotonic() - self.started
        lr = max(runner.optim_wrapper.get_lr()["lr"])
        loss = sum(self.losses) / max(len(self.losses), 1)
        self.curve.append({"epoch": runner.epoch + 1, "loss": loss, "lr": lr, "seconds": self.seconds})
        self.write(runner)

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:  # noqa: ANN001
        if self.curve and metrics and "top1" in metrics:
            self.curve[-1]["top1"] = float(metrics["top1"])
            if "scored" in metrics:
                self.curve[-1]["scored"] = int(metrics["scored"])
            self.write(runner)

    def write(self, runner) -> None:  # noqa: ANN001
        path = Path(runner.work_dir) / "curve.json"
        partial = path.with_name("curve.json.partial")
        partial.write_text(json.dumps(self.curve, indent=1))
        os.replace(partial, path)


def runner_config(
    recipe: FineTuneRecipe,
    data: ClassificationData,
    *,
    backbone: str | None,
    checkpoint: str | Path | None,
    input_size: int | None,
    work_dir: str | Path,
    seed: int = 0,
    save_checkpoint: bool = False,
    trust: bool = False,
    in_chans: int | None = None,
) -> Config:
    """The mmengine config of one fine-tuning run (the keys the `configs/finetune/` files set). The backbone, input
    size and channels (`in_chans`: the data's, and the classifier's) default to those of the checkpoint (random
    init: `backbone` is required, 64 px and 3 channels by default)."""
    if checkpoint is None:
        if backbone is None:
            raise ValueError("fine-tuning needs a checkpoint, or a backbone name for random init")
        name, input_size, channels = backbone, input_size or DEFAULT_INPUT_SIZE, in_chans or 3
    else:
        weights = read_encoder_weights(checkpoint, backbone, trust=trust)
        name, input_size, channels = weights.backbone, input_size or weights.input_size, in_chans or weights.in_chans
    epochs, warmup = recipe.epochs, recipe.warmup_epochs
    val_interval = recipe.val_interval or epochs
    train_set, val_set = data.at(input_size, channels=channels)
    loader = dict(num_workers=0, collate_fn=dict(type="default_collate"))
    schedule = [dict(type="CosineAnnealingLR", by_epoch=True, begin=warmup, end=epochs, T_max=epochs - warmup,
                     eta_min=0.0, convert_to_iter_based=True)]  # fmt: skip
    if warmup:
        schedule.insert(0, dict(type="LinearLR", start_factor=1e-3, by_epoch=True, begin=0, end=warmup,
                                convert_to_iter_based=True))  # fmt: skip
    cfg = Config(
        dict(
            default_scope=None,
            work_dir=str(work_dir),
            model=dict(
                type="ImageClassifier",
                backbone=name,
                checkpoint=None if checkpoint is None else str(checkpoint),
                num_classes=data.num_classes,
                input_size=input_size,
                drop_path_rate=recipe.drop_path,
                label_smoothing=recipe.label_smoothing,
                trust_checkpoint=trust,
                in_chans=channels,
                # mmengine's ImgDataPreprocessor takes 1 or 3 means; hiermae's takes one per channel (flipping none)
                data_preprocessor=dict(
                    type="MIMDataPreprocessor", channels=channels, flip_prob=0.0, **data.normalization_for(channels)
                ),
            ),
            train_dataloader=dict(
                batch_size=recipe.batch_size,
                sampler=dict(type="DefaultSampler", shuffle=True),
                dataset=train_set,
                **loader,
            ),
            val_dataloader=dict(
                batch_size=256, sampler=dict(type="DefaultSampler", shuffle=False), dataset=val_set, **loader
            ),
            val_evaluator=dict(type="TopOneAccuracy"),
            train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=val_interval),
            val_cfg=dict(fp16=recipe.amp),
            optim_wrapper=dict(
                type="OptimWrapper",
                optimizer=dict(
                    type="AdamW", lr=recipe.head_base_lr(name), betas=(0.9, 0.999), weight_decay=recipe.weight_decay
                ),
                constructor="LayerDecayOptimWrapperConstructor",
                paramwise_cfg=dict(layer_decay_rate=recipe.layer_decay),
            ),
            auto_scale_lr=dict(base_batch_size=256, enable=True),
            param_scheduler=schedule,
            default_hooks=dict(
                checkpoint=dict(type="CheckpointHook", interval=-1, save_last=save_checkpoint),
                logger=dict(type="LoggerHook", interval=10),
            ),
            custom_hooks=[dict(type="TrainingCurveHook")],
            log_processor=dict(by_epoch=True, window_size=10),
            randomness=dict(seed=seed, deterministic=False),
            env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo")),
        )
    )
    if recipe.probe_head:
        cfg.custom_hooks.append(dict(type="ProbeHeadHook"))
    if recipe.amp:
        enable_amp(cfg)
    return cfg


@dataclass
class FineTuneResult:
    """Top-1 on the evaluation set after the last epoch, the per-epoch curve, how the weights were loaded, and
    how many images each split (`train`, `val`) listed, found unreadable and really used (`images`)."""

    top1: float
    curve: list[dict[str, float]]
    load_report: KeyReport | None
    backbone: str
    input_size: int
    images: dict[str, dict[str, int]]


def split_images(dataset: Sized) -> dict[str, int]:
    """How many images a split lists, how many of them were found unreadable (`skipped_count`: their places were
    taken by other images of the same split), and how many it really used."""
    listed, unreadable = len(dataset), int(getattr(dataset, "skipped_count", 0))
    return {"listed": listed, "unreadable": unreadable, "used": listed - unreadable}


def run_finetuning(cfg: Config) -> FineTuneResult:
    """Train the config's classifier and return its final top-1, training curve and images per split."""
    runner = Runner.from_cfg(cfg)
    runner.train()
    curve_hook = next(hook for hook in runner.hooks if isinstance(hook, TrainingCurveHook))
    final = curve_hook.curve[-1] if curve_hook.curve else {}
    if "top1" not in final:
        raise RuntimeError(f"fine-tuning in {cfg.work_dir} ended without a validation after its last epoch")
    model: ImageClassifier = runner.model
    images = {split: split_images(loader.dataset) for split, loader in
              (("train", runner.train_dataloader), ("val", runner.val_dataloader))}  # fmt: skip
    images["val"]["used"] = int(final.get("scored", images["val"]["used"]))  # the distinct images top-1 is over
    return FineTuneResult(final["top1"], curve_hook.curve, model.load_report, model.backbone, model.input_size, images)


class UsedWorkDirError(FileExistsError):
    """A work dir that holds another fine-tuning run's results, which a new run would replace."""


def check_unused_work_dir(work_dir: str | Path) -> None:
    """Refuse a work dir holding another run's classifier (`epoch_N.pth`, `last_checkpoint`) or `curve.json`."""
    found = sorted(path.name for pattern in RUN_RESULTS for path in Path(work_dir).glob(pattern))
    if found:
        raise UsedWorkDirError(
            f"work dir {work_dir} holds another run's results ({', '.join(found[:6])}), which this run would replace; "
            "give another --work-dir (by default each run gets a new one) or move them"
        )


def finetune(
    checkpoint: str | Path | None,
    data: ClassificationData,
    *,
    recipe: FineTuneRecipe,
    backbone: str | None = None,
    input_size: int | None = None,
    work_dir: str | Path,
    seed: int = 0,
    save_checkpoint: bool = False,
    trust: bool = False,
    in_chans: int | None = None,
) -> FineTuneResult:
    """Fine-tune `checkpoint` (or random init of `backbone`) on `data` with `recipe`; see `runner_config` (`trust`:
    unpickle the checkpoint in full, `--trust-checkpoint`). With `save_checkpoint` the classifier is saved, and a
    `work_dir` holding another run's results is refused (`UsedWorkDirError`) before anything runs."""
    if save_checkpoint:
        check_unused_work_dir(work_dir)
    cfg = runner_config(
        recipe, data, backbone=backbone, checkpoint=checkpoint, input_size=input_size, work_dir=work_dir, seed=seed,
        save_checkpoint=save_checkpoint, trust=trust, in_chans=in_chans,
    )  # fmt: skip
    return run_finetuning(cfg)
