"""Why can fine-tuning end below the linear probe of the same weights? One measurement per candidate cause.

    python -m experiments.diagnose_finetune CKPT|random VARIANT [--backbone resnet18] [--input-size 96]
                                             [--seed 0] [--work-dir D] [--json FILE]

Every variant trains on the low-label regime's fixed 1000 labelled Fashion-MNIST images and is scored on the
validation split (2000 other training images), never on the test split. VARIANT is one of:

- `probes`: kNN and linear classifiers on frozen pooled features, trained as the comparison's probe (BatchNorm, 100
  epochs, AdamW lr 1e-2, batch 256) and with the budget the fine-tuning head gets (no BatchNorm, lr 2.5e-4, weight
  decay 0.05, batch 64, 20 epochs = 313 steps), and the mixtures of the two; a large gap between the first two says
  the fine-tuning head is under-trained;
- a fine-tuning variant of `VARIANTS`: a protocol with one thing changed (its lr, its layer decay, the backbone
  frozen, no augmentation or drop path, BatchNorm statistics frozen, more epochs). The plain names start from the
  protocol the first diagnosis found wanting (20 epochs, head lr 1e-3 × 64/256); the `chosen` ones from the
  protocol it chose on ResNet-18 for every family (head lr 1e-2 × 64/256); the `family` ones from today's protocol
  (`FineTuneRecipe()`, each family's own head lr; `family_lr` is it unchanged). "no augmentation" drops the
  random-resized crops and drop path and keeps the flips; "light crops" crop 60-100 % of the area; "probe head"
  starts the head from a linear probe of the starting weights, random init included (LP-FT,
  `hiermae.downstream.probe_head`).

The result (top-1, and for fine-tuning the per-epoch curve with validation every 5 epochs) is appended to --json
as one line.
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from mmengine.hooks import Hook
from mmengine.registry import DATASETS, HOOKS
from torch import nn

from hiermae.downstream.classification import (
    FeatureDataset,
    LinearProbe,
    extract_features,
    knn_accuracy,
    train_and_test,
)
from hiermae.downstream.classification_data import fashion_mnist_data
from hiermae.downstream.finetune import FineTuneRecipe, run_finetuning, runner_config
from hiermae.downstream.pretrained import load_backbone

LABELLED = 1000


@HOOKS.register_module()
class FrozenBatchNormHook(Hook):
    """Keeps every BatchNorm in eval mode during training: normalised by, and not updating, the loaded statistics."""

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:  # noqa: ANN001
        for module in runner.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def recipe(**changes) -> FineTuneRecipe:
    """The protocol the issue diagnosed (20 epochs, head lr 1e-3 × 64/256), with `changes`."""
    return replace(FineTuneRecipe(epochs=20, warmup_epochs=2, base_lr=1e-3), val_interval=5, **changes)


def chosen(**changes) -> FineTuneRecipe:
    """The protocol the first diagnosis chose on ResNet-18 for every family (`FineTuneRecipe()` with head lr 1e-2 ×
    64/256), with `changes`."""
    return replace(FineTuneRecipe(base_lr=1e-2), val_interval=5, **changes)


def family(**changes) -> FineTuneRecipe:
    """The protocol of the second diagnosis (each family's own head lr and layer decay, random-resized crops of
    35-100 % of the area, drop path 0.1, a randomly initialised head), with `changes`."""
    protocol = FineTuneRecipe(crop_scale=(0.35, 1.0), drop_path=0.1, probe_head=False, val_interval=5)
    return replace(protocol, **changes)


EVERY_HEAD_FROM_PROBE = dict(type="ProbeHeadHook", random_init=True)
FROZEN = 1e-4  # a layer decay rate that leaves every backbone layer at lr × 1e-4 or less: the head alone learns

VARIANTS: dict[str, tuple[FineTuneRecipe, list[dict]]] = {
    "default": (recipe(), []),
    "lr_x4": (recipe(base_lr=4e-3), []),
    "lr_x10": (recipe(base_lr=1e-2), []),
    "lr_div4": (recipe(base_lr=2.5e-4), []),
    "frozen_backbone": (recipe(layer_decay=FROZEN), []),
    "no_augmentation": (recipe(crop_scale=(1.0, 1.0), drop_path=0.0), []),
    "frozen_batchnorm": (recipe(), [dict(type="FrozenBatchNormHook")]),
    "lr_x10_30_epochs": (recipe(base_lr=1e-2, epochs=30, warmup_epochs=3), []),
    "chosen": (chosen(), []),
    "chosen_lr_div4": (chosen(base_lr=2.5e-3), []),
    "chosen_lr_div10": (chosen(base_lr=1e-3), []),
    "chosen_lr_div40": (chosen(base_lr=2.5e-4), []),
    "chosen_layer_decay_0.9": (chosen(layer_decay=0.9), []),
    "chosen_no_layer_decay": (chosen(layer_decay=1.0), []),
    "chosen_frozen_backbone": (chosen(layer_decay=FROZEN), []),
    "chosen_no_augmentation": (chosen(crop_scale=(1.0, 1.0), drop_path=0.0), []),
    "chosen_no_drop_path": (chosen(drop_path=0.0), []),
    "family_lr": (family(), []),
    "family_no_augmentation": (family(crop_scale=(1.0, 1.0), drop_path=0.0), []),
    "family_light_crops": (family(crop_scale=(0.6, 1.0), drop_path=0.0), []),
    "family_no_drop_path": (family(drop_path=0.0), []),
    "chosen_light_crops": (chosen(crop_scale=(0.6, 1.0), drop_path=0.0), []),
    # LP-FT as this diagnosis measured it: for random init too (the protocol now gives it to pretrained weights only)
    "family_no_augmentation_probe_head": (family(crop_scale=(1.0, 1.0), drop_path=0.0), [EVERY_HEAD_FROM_PROBE]),
    "family_probe_head": (family(), [EVERY_HEAD_FROM_PROBE]),
}


class PlainProbe(LinearProbe):
    """The linear head alone, as fine-tuning trains it: no BatchNorm before it."""

    def __init__(self, in_features: int, num_classes: int = 10) -> None:
        super().__init__(in_features, num_classes)
        self.norm = nn.Identity()


def probes(checkpoint: str | None, backbone: str, input_size: int, seed: int, work_dir: Path) -> dict[str, float]:
    """kNN, the comparison's BN probe, and linear heads trained with the fine-tuning head's budget."""
    data = fashion_mnist_data((0.35, 1.0), labelled=LABELLED, evaluate_on="validation")
    loaded = load_backbone(checkpoint, backbone, input_size)
    train_cfg, val_cfg = data.at(loaded.input_size, augment=False)
    train, val = DATASETS.build(train_cfg), DATASETS.build(val_cfg)
    train_x, train_y = extract_features(loaded, train, data.normalization, amp=True)
    val_x, val_y = extract_features(loaded, val, data.normalization, amp=True)
    results = {"knn": knn_accuracy(train_x, train_y, val_x, val_y), "feature_std": float(train_x.std())}
    heads = {  # name: (model, epochs, batch, lr, weight decay)
        "bn_probe_100ep_lr1e-2": (LinearProbe, 100, 256, 1e-2, 0.0),
        "head_budget_20ep_lr2.5e-4": (PlainProbe, 20, 64, 2.5e-4, 0.05),
        "bn_head_budget_20ep_lr2.5e-4": (LinearProbe, 20, 64, 2.5e-4, 0.05),
        "head_20ep_lr1e-2": (PlainProbe, 20, 64, 1e-2, 0.0),
        "head_100ep_lr1e-2": (PlainProbe, 100, 256, 1e-2, 0.0),
    }
    for name, (model, epochs, batch, lr, decay) in heads.items():
        torch.manual_seed(seed)
        results[name] = train_and_test(
            model(train_x.shape[1]), FeatureDataset(train_x, train_y), FeatureDataset(val_x, val_y),
            work_dir=work_dir, name=name, epochs=epochs, batch_size=batch, lr=lr, weight_decay=decay, seed=seed,
        )  # fmt: skip
    return results


def finetune_variant(
    checkpoint: str | None, variant: str, backbone: str, input_size: int, seed: int, work_dir: Path
) -> dict:
    """Fine-tune with one variant of the protocol; top-1 on the validation split and the curve."""
    protocol, hooks = VARIANTS[variant]
    data = fashion_mnist_data(protocol.crop_scale, labelled=LABELLED, evaluate_on="validation")
    cfg = runner_config(protocol, data, backbone=backbone, checkpoint=checkpoint, input_size=input_size,
                        work_dir=work_dir, seed=seed)  # fmt: skip
    cfg.custom_hooks = [*cfg.custom_hooks, *hooks]
    result = run_finetuning(cfg)
    return {"top1": result.top1, "curve": result.curve}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="pretraining checkpoint, or 'random' for random init")
    parser.add_argument("variant", choices=["probes", *VARIANTS])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default="work_dirs/diagnose_finetune")
    parser.add_argument("--json", default="work_dirs/diagnose_finetune/results.jsonl", help="appends one line")
    args = parser.parse_args(argv)
    checkpoint = None if args.checkpoint == "random" else args.checkpoint
    work_dir = Path(args.work_dir) / f"{args.variant}-{'random' if checkpoint is None else 'pretrained'}"
    start = time.monotonic()
    if args.variant == "probes":
        result = probes(checkpoint, args.backbone, args.input_size, args.seed, work_dir)
    else:
        result = finetune_variant(checkpoint, args.variant, args.backbone, args.input_size, args.seed, work_dir)
    result.update(variant=args.variant, backbone=args.backbone, checkpoint=args.checkpoint, seed=args.seed,
                  seconds=time.monotonic() - start)  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "a") as file:
        file.write(json.dumps(result) + "\n")
    print(json.dumps({key: value for key, value in result.items() if key != "curve"}))


if __name__ == "__main__":
    main()
