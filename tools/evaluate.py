"""Classification evaluation on Fashion-MNIST: kNN (cosine, k=20), linear probe and fine-tuning, top-1 accuracy.

    python tools/evaluate.py [CKPT] [--backbone NAME] [--input-size S] [--protocol knn linear finetune]
                             [--train-limit N | --labelled N] [--test-limit N] [--linear-epochs E]
                             [--finetune-epochs E] [--batch-size B]
                             [--work-dir D] [--seed 0] [--json FILE] [--in-chans C]

CKPT is a pretraining checkpoint or a timm export (`tools/export.py --format timm`); without it the backbone
named by --backbone is evaluated from random initialisation (the baseline pretraining must beat). --labelled N
trains every protocol on a fixed stratified N training images (the low-label regime); fine-tuning follows
`tools/finetune.py`'s protocol (`hiermae/downstream/finetune.py`). Images are read with the checkpoint's input
channels (--in-chans C: C of them, the stem adapted as `tools/finetune.py` adapts it).
"""

import argparse
import sys
from pathlib import Path

from hiermae.checkpoints import CheckpointError
from hiermae.downstream.classification import evaluate
from hiermae.downstream.finetune import FineTuneRecipe
from hiermae.engine import (
    ToolParser,
    file_to_write,
    folder_to_write,
    image_size,
    new_run_folder,
    positive_int,
    random_seed,
)
from hiermae.utils import write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ToolParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="pretraining checkpoint or timm export; omit for random init")
    parser.add_argument("--backbone", help="timm name (required for random init, else read from the checkpoint)")
    parser.add_argument("--input-size", type=image_size, help="image side (default: the checkpoint's, or 64)")
    parser.add_argument("--in-chans", type=positive_int, help="image channels (default: the checkpoint's, or 3)")
    parser.add_argument(
        "--protocol", nargs="+", choices=["knn", "linear", "finetune"], default=["knn", "linear"],
        help="evaluations to run",
    )  # fmt: skip
    parser.add_argument("--train-limit", type=positive_int, help="use only the first N training images")
    parser.add_argument("--labelled", type=positive_int, help="train on a fixed stratified N training images")
    parser.add_argument("--test-limit", type=positive_int, help="use only the first N test images")
    parser.add_argument("--linear-epochs", type=positive_int, default=30, help="linear probe epochs (cached features)")
    parser.add_argument("--finetune-epochs", type=positive_int, default=FineTuneRecipe.epochs, help="fine-tune epochs")
    parser.add_argument("--batch-size", type=positive_int, default=FineTuneRecipe.batch_size, help="fine-tuning batch")
    parser.add_argument(
        "--work-dir", type=folder_to_write,
        help="where the runners write their logs (default: a new folder in work_dirs/evaluate)",
    )
    parser.add_argument("--seed", type=random_seed, default=0, help="random seed (random init, data order)")
    parser.add_argument("--json", type=file_to_write, help="also write {protocol: top-1} to this file")
    parser.add_argument(
        "--trust-checkpoint", action="store_true", help="unpickle CHECKPOINT in full (files of a trusted origin only)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.checkpoint is None and not args.backbone:
        raise SystemExit("evaluate: give a checkpoint, or --backbone NAME for random initialisation")
    try:
        results = run_evaluation(args)
    except (CheckpointError, FileNotFoundError, ValueError) as error:  # ValueError: e.g. an unsupported --backbone
        print(f"evaluate failed: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    source = args.checkpoint or f"random init ({args.backbone})"
    names = {"knn": "kNN (cosine, k=20)", "linear": "linear probe", "finetune": "fine-tune"}
    for protocol, accuracy in results.items():
        print(f"top-1 {protocol}: {accuracy:.4f}  ({names[protocol]}, {source})")
    if args.json:
        write_json(Path(args.json), results)


def run_evaluation(args: argparse.Namespace) -> dict[str, float]:
    """The protocols' top-1 accuracies for the parsed arguments."""
    return evaluate(
        args.checkpoint,
        backbone=args.backbone,
        input_size=args.input_size,
        protocols=tuple(args.protocol),
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        work_dir=args.work_dir or new_run_folder("work_dirs/evaluate"),
        linear_epochs=args.linear_epochs,
        labelled=args.labelled,
        recipe=FineTuneRecipe(
            epochs=args.finetune_epochs, warmup_epochs=args.finetune_epochs // 10, batch_size=args.batch_size
        ),
        seed=args.seed,
        trust=args.trust_checkpoint,
        in_chans=args.in_chans,
    )


if __name__ == "__main__":
    main()
