"""Compare masked pretraining across backbones (or ablate one setting) with everything else held equal.

    python tools/compare.py [--out work_dirs/compare] [--report REPORT.md] [--backbones NAME ...]
                            [--seeds 0 1 2] [--iters 150] [--batch-size 32] [--input-size 96] [--mask-ratio 0.75]
                            [--protocols knn linear finetune] [--train-limit 4000] [--test-limit 1000]
                            [--jobs 2] [--ablate mask_ratio target sparse decoder] [--ablate-backbone NAME]
                            [--report-only]

Default: resnet18, convnext_atto, swin_tiny and vit_tiny pretrained by hiermae's sparse path on Fashion-MNIST
with the same masks, decoder (UNet), target, loss and images seen; each step's cost (parameters, FLOPs,
throughput, peak memory) against its dense reference; kNN, linear-probe and fine-tune accuracy of every
pretrained encoder and of random init of the same backbone over the seeds. With --ablate the variants are
the ablation axes on one backbone instead. Rerunning the same command resumes a partly finished run.
The report (markdown) and its PNG plots (in a folder named after the report) go to --report.
"""

import argparse
import shlex
import sys
from pathlib import Path

from hiermae.compare.comparison import Settings, report_so_far, run_comparison
from hiermae.compare.plan import ABLATIONS, DECODERS, DEFAULT_BACKBONES, Pretraining
from hiermae.compare.runs import Evaluation
from hiermae.encoders import check_backbone_name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="work_dirs/compare", help="run folder (checkpoints, logs, step results)")
    parser.add_argument("--report", help="report path (default: OUT/report.md); plots go to a folder beside it")
    parser.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES), help="timm names to compare")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="one run per seed and variant")
    parser.add_argument("--iters", type=int, default=150, help="pretraining iterations per run")
    parser.add_argument("--batch-size", type=int, default=32, help="pretraining batch size")
    parser.add_argument("--input-size", type=int, default=96, help="image side, a multiple of 32")
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--decoder", choices=list(DECODERS), default="unet")
    parser.add_argument("--target", choices=["pixels", "norm_pixels", "hog"], default="norm_pixels")
    parser.add_argument("--dense-reference", action="store_true", help="pretrain with sparse=False instead")
    parser.add_argument("--protocols", nargs="+", choices=["knn", "linear", "finetune"],
                        default=["knn", "linear", "finetune"])  # fmt: skip
    parser.add_argument("--train-limit", type=int, default=4000, help="training images for the evaluations")
    parser.add_argument("--test-limit", type=int, default=1000, help="test images for the evaluations")
    parser.add_argument("--linear-epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="steps run at once, each on an equal share of the cores")
    parser.add_argument("--ablate", nargs="+", choices=list(ABLATIONS), default=[], help="ablation axes")
    parser.add_argument("--ablate-backbone", default="convnext_atto", help="the backbone the ablations use")
    parser.add_argument(
        "--report-only", action="store_true", help="only write a (partial) report from the steps finished so far"
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """The run's settings; names are checked here so a typo fails before any work starts."""
    backbones = [args.ablate_backbone] if args.ablate else args.backbones
    for name in backbones:
        check_backbone_name(name)
    base = Pretraining(
        backbone=backbones[0], sparse=not args.dense_reference, mask_ratio=args.mask_ratio, target=args.target,
        decoder=args.decoder, input_size=args.input_size, iters=args.iters, batch_size=args.batch_size,
    )  # fmt: skip
    evaluation = Evaluation(
        protocols=tuple(args.protocols), train_limit=args.train_limit, test_limit=args.test_limit,
        linear_epochs=args.linear_epochs, finetune_epochs=args.finetune_epochs,
    )  # fmt: skip
    return Settings(tuple(backbones), tuple(args.seeds), base, evaluation, tuple(args.ablate))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from(args)
    out = Path(args.out)
    report = Path(args.report) if args.report else out / "report.md"
    command = "python tools/compare.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.report_only:
        written = report_so_far(out, settings, report, command.replace(" --report-only", ""))
    else:
        written = run_comparison(out, settings, jobs=args.jobs, report=report, command=command)
    print(f"report: {written}")


if __name__ == "__main__":
    main()
