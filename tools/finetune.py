"""Fine-tune an export or a pretraining checkpoint (or random init) as a classifier, with the MIM papers' protocol.

    python tools/finetune.py [CKPT] [--backbone NAME] [--input-size S]
                             [--data fashion-mnist|FOLDER] [--val-data FOLDER] [--val-fraction 0.2] [--labelled N]
                             [--epochs 30] [--batch-size 64] [--base-lr LR] [--weight-decay 0.05]
                             [--layer-decay R] [--warmup-epochs 3] [--label-smoothing 0.1] [--drop-path P]
                             [--crop-scale LOW HIGH] [--no-probe-head] [--no-amp] [--work-dir D] [--seed 0]
                             [--json FILE] [--in-chans C]

CKPT is a timm export (`tools/export.py --format timm`) or a pretraining checkpoint; without it, --backbone is
trained from random initialisation (without layer-wise lr decay). FOLDER holds one sub-folder per class; without
--val-data, a stratified --val-fraction of it is held out and scored. On Fashion-MNIST, --labelled N trains on a
fixed stratified N of the training images and scores on the 10 k test images. The work dir (by default a new
one per run) receives the fine-tuned classifier (`epoch_<N>.pth`, timm's names under `network.`) and `curve.json`
(loss, lr, seconds and top-1 per epoch); one holding another run's results is refused. An unreadable image is
replaced by another of its own split, and the report counts the images each split really used and scored.
Protocol: `hiermae/downstream/finetune.py`.
Images are read with the checkpoint's input channels (3 for random init); --in-chans C reads C (1 grey, 3 RGB,
other: TIFF bands) and adapts a stem trained on another count as timm adapts pretrained weights (summed to one
channel, repeated and scaled to more), which the key report prints.
"""

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from hiermae.checkpoints import CheckpointError
from hiermae.downstream.classification_data import fashion_mnist_data, image_folder_data
from hiermae.downstream.finetune import (
    FineTuneRecipe,
    UsedWorkDirError,
    finetune,
)
from hiermae.engine import (
    ToolParser,
    file_to_write,
    folder_to_write,
    image_size,
    new_run_folder,
    number,
    positive_int,
    random_seed,
)
from hiermae.utils import write_json

FASHION_MNIST = "fashion-mnist"
# Augmentation by data: Fashion-MNIST's centred garments fine-tune best whole and without drop path (the recipe's
# default); natural photos get the usual ImageNet crop range and drop path 0.1, as the MIM papers fine-tune.
CROP_SCALE = {FASHION_MNIST: FineTuneRecipe.crop_scale, "folder": (0.08, 1.0)}
DROP_PATH = {FASHION_MNIST: FineTuneRecipe.drop_path, "folder": 0.1}
fraction = number(float, minimum=0.0, maximum=1.0, exclusive=True)
non_negative = number(float, minimum=0.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ToolParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="timm export or pretraining checkpoint; omit for random init")
    parser.add_argument("--backbone", help="timm name (required for random init, else read from the checkpoint)")
    parser.add_argument("--input-size", type=image_size, help="image side (default: the checkpoint's, or 64)")
    parser.add_argument("--in-chans", type=positive_int, help="image channels (default: the checkpoint's, or 3)")
    parser.add_argument("--data", default=FASHION_MNIST, help="'fashion-mnist' or a folder with a sub-folder per class")
    parser.add_argument("--val-data", help="a separate validation folder (same class sub-folders)")
    parser.add_argument("--val-fraction", type=fraction, default=0.2, help="held out of --data without --val-data")
    parser.add_argument("--labelled", type=positive_int, help="Fashion-MNIST: train on a stratified N images")
    defaults = FineTuneRecipe()
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    parser.add_argument(
        "--base-lr", type=number(float, minimum=0.0, exclusive=True),
        help="head lr per 256 images (lr = base-lr × batch-size / 256; default: the family's)",
    )  # fmt: skip
    parser.add_argument("--weight-decay", type=non_negative, default=defaults.weight_decay)
    parser.add_argument(
        "--layer-decay", type=number(float, minimum=0.0, maximum=1.0),
        help="layer-wise lr decay rate (default: the family's; 1 = none, the random-init default)",
    )  # fmt: skip
    parser.add_argument("--warmup-epochs", type=number(int, minimum=0), default=defaults.warmup_epochs)
    parser.add_argument("--label-smoothing", type=number(float, minimum=0.0, maximum=1.0),
                        default=defaults.label_smoothing)  # fmt: skip
    parser.add_argument("--drop-path", type=number(float, minimum=0.0, maximum=1.0),
                        help="drop path rate (default: by data)")  # fmt: skip
    parser.add_argument("--crop-scale", type=number(float, minimum=0.0, maximum=1.0), nargs=2,
                        metavar=("LOW", "HIGH"), help="random-resized-crop area range (default: by data)")  # fmt: skip
    parser.add_argument(
        "--probe-head", action=argparse.BooleanOptionalAction, default=defaults.probe_head,
        help="LP-FT: start the head as a linear probe of the starting weights (default: on)",
    )  # fmt: skip
    parser.add_argument("--no-amp", action="store_true", help="train in fp32 (default: bf16 autocast on the CPU)")
    parser.add_argument(
        "--work-dir", type=folder_to_write,
        help="logs, curve.json and the classifier (default: a new work_dirs/finetune/<checkpoint>_<time>); a folder "
        "holding another run's curve.json or epoch_N.pth is refused",
    )  # fmt: skip
    parser.add_argument("--seed", type=random_seed, default=0, help="random seed (random init, data order, crops)")
    parser.add_argument(
        "--json", type=file_to_write, help="also write {top1, curve, backbone, input_size, recipe, images} to this file"
    )
    parser.add_argument(
        "--trust-checkpoint", action="store_true", help="unpickle CHECKPOINT in full (files of a trusted origin only)"
    )
    return parser.parse_args(argv)


def recipe_from(args: argparse.Namespace) -> FineTuneRecipe:
    """The recipe the options ask for; the crop range and drop path default by data source."""
    source = FASHION_MNIST if fashion(args) else "folder"
    crop = tuple(args.crop_scale) if args.crop_scale else CROP_SCALE[source]
    drop_path = DROP_PATH[source] if args.drop_path is None else args.drop_path
    values = {field.name: getattr(args, field.name) for field in fields(FineTuneRecipe) if hasattr(args, field.name)}
    return FineTuneRecipe(
        **{**values, "crop_scale": crop, "drop_path": drop_path, "amp": not args.no_amp, "val_interval": None}
    )


def new_work_dir(args: argparse.Namespace, parent: Path = Path("work_dirs/finetune")) -> Path:
    """A folder of this run's own, created now: `parent/<checkpoint name or random_<backbone>>_<start time>`."""
    name = Path(args.checkpoint).stem if args.checkpoint else f"random_{args.backbone}"
    return new_run_folder(parent, prefix=f"{name}_")


def image_counts(images: dict[str, dict[str, int]]) -> str:
    """The images each split listed, found unreadable and really used, in one line."""
    train, val = images["train"], images["val"]
    return (f"images: training {train['listed']} listed, {train['unreadable']} unreadable ({train['used']} used); "
            f"validation {val['listed']} listed, {val['unreadable']} unreadable ({val['used']} scored)")  # fmt: skip


def fashion(args: argparse.Namespace) -> bool:
    return args.data == FASHION_MNIST


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.checkpoint is None and not args.backbone:
        raise SystemExit("finetune: give a checkpoint, or --backbone NAME for random initialisation")
    if not fashion(args) and args.labelled:
        raise SystemExit("finetune: --labelled selects a Fashion-MNIST subset; with a folder, pass the images to use")
    if fashion(args) and args.val_data:
        raise SystemExit("finetune: --val-data goes with a --data folder; Fashion-MNIST scores on its test split")
    try:
        work_dir = Path(args.work_dir) if args.work_dir else new_work_dir(args)
        recipe = recipe_from(args)
        if fashion(args):
            data = fashion_mnist_data(recipe.crop_scale, labelled=args.labelled)
        else:
            data = image_folder_data(args.data, recipe.crop_scale, args.val_data, args.val_fraction)
        result = finetune(
            args.checkpoint, data, recipe=recipe, backbone=args.backbone, input_size=args.input_size,
            work_dir=work_dir,
            seed=args.seed, save_checkpoint=True, trust=args.trust_checkpoint, in_chans=args.in_chans,
        )  # fmt: skip
    except (CheckpointError, FileNotFoundError, UsedWorkDirError, ValueError) as error:
        print(f"finetune failed: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    if result.load_report is not None:
        print("\n".join(result.load_report.lines()))
    first, last = result.curve[0], result.curve[-1]
    print(f"training loss: {first['loss']:.4f} after epoch 1, {last['loss']:.4f} after epoch {last['epoch']}")
    source = args.checkpoint or f"random init ({args.backbone})"
    print(f"top-1 fine-tune: {result.top1:.4f}  ({result.backbone} at {result.input_size} px, {source})")
    print(image_counts(result.images))
    print(f"curve: {work_dir / 'curve.json'}")
    if args.json:
        summary = dict(top1=result.top1, curve=result.curve, backbone=result.backbone, input_size=result.input_size,
                       recipe=recipe.as_dict(), images=result.images)  # fmt: skip
        write_json(Path(args.json), json.loads(json.dumps(summary)))


if __name__ == "__main__":
    main()
