"""Compare masked pretraining across backbones (or ablate one setting, or sweep each family's recipe).

    python tools/compare.py [--out work_dirs/compare] [--report REPORT.md] [--backbones NAME ...]
                            [--seeds 0 1 2] [--minutes M | --iters 150] [--batch-size 32] [--input-size 96]
                            [--recipes family|shared] [--mask-ratio R] [--decoder D] [--target T] [--amp]
                            [--protocols knn linear finetune] [--labelled 1000 | --train-limit N] [--test-limit N]
                            [--evaluate-on test|validation] [--linear-epochs 100] [--finetune-epochs 30]
                            [--jobs 2] [--ablate mask_ratio target sparse decoder] [--ablate-backbone NAME]
                            [--sweep] [--budget-curve MIN ...] [--budget-backbone NAME]
                            [--plan | --report-only] [--stop-after MINUTES]

Default: resnet18, convnext_atto, swin_tiny and vit_tiny pretrained by hiermae's sparse path on Fashion-MNIST, each
from its family's recipe (`configs/pretrain/*_96px_fashionmnist.py`; `--recipes shared` gives all of them the
shared bases), for `--minutes` of training each (equal wall time; iterations calibrated per variant) or `--iters`
iterations; each step's cost (parameters, FLOPs, throughput, peak memory) against its dense reference; then kNN,
linear-probe and fine-tuning top-1 of every pretrained encoder and of random init of the same backbone over the
seeds, in the low-label regime (`--labelled` stratified training images, all 10 k test images). With --ablate the
variants are the ablation axes on one backbone; with --sweep, each family's grid of mask ratio × lr scale, scored
on a validation split of the training images. --budget-curve adds shorter budgets of one backbone, for the curve
of gain against pretraining minutes.

Every finished chain (a pretraining run and its evaluation, or an evaluation of random init) lands as a small JSON
file in the report's ledger, `<report folder>/runs/`, meant to be committed: rerunning the same command, in any
session and any run folder, runs only the chains the ledger lacks. --stop-after M starts no chain that its
estimate says cannot finish within M minutes of the command's start (commit the ledger, rerun later); --plan
calibrates, then prints every chain with its estimated minutes and the total, and trains nothing; --report-only
rebuilds the report from the ledger alone. The report (markdown) and its PNG plots (in a folder named after the
report) go to --report.
"""

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness (experiments/) lives in the checkout
from experiments.comparison import Settings, report_from_ledger, run_comparison, show_plan  # noqa: E402
from experiments.plan import ABLATIONS, DECODERS, DEFAULT_BACKBONES, Pretraining, family_recipe  # noqa: E402
from experiments.runs import Evaluation  # noqa: E402
from hiermae.backbones import check_backbone_name  # noqa: E402
from hiermae.downstream.finetune import FineTuneRecipe  # noqa: E402
from hiermae.engine import (  # noqa: E402
    ToolParser,
    file_to_write,
    folder_to_write,
    image_size,
    number,
    positive_int,
    random_seed,
    ratio,
)

SHARED_DEFAULTS = dict(mask_ratio=0.75, decoder="unet", target="norm_pixels")  # the shared bases' recipe
minutes = number(float, minimum=0.0, exclusive=True)  # a wall-time budget


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ToolParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=folder_to_write, default="work_dirs/compare",
        help="run folder (checkpoints, logs, step results)",
    )  # fmt: skip
    parser.add_argument(
        "--report", type=file_to_write,
        help="report path (default: OUT/report.md); plots go to a folder beside it",
    )  # fmt: skip
    parser.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES), help="timm names to compare")
    parser.add_argument("--seeds", nargs="+", type=random_seed, default=[0, 1, 2], help="one run per seed and variant")
    parser.add_argument("--minutes", type=minutes, help="equal wall-time budget per pretraining run (else --iters)")
    parser.add_argument(
        "--iters", type=positive_int, default=150,
        help="pretraining iterations per run without --minutes",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, default=32, help="pretraining batch size")
    parser.add_argument("--input-size", type=image_size, default=96, help="image side, a multiple of 32")
    parser.add_argument("--recipes", choices=["family", "shared"], default="family",
                        help="start each backbone from its family's recipe, or all from the shared bases")  # fmt: skip
    parser.add_argument("--mask-ratio", type=ratio, help="override the recipe's mask ratio")
    parser.add_argument("--decoder", choices=list(DECODERS), help="override the recipe's decoder")
    parser.add_argument("--target", choices=["pixels", "norm_pixels", "hog"], help="override the recipe's target")
    parser.add_argument("--dense-reference", action="store_true", help="pretrain with sparse=False instead")
    parser.add_argument("--amp", action="store_true", help="pretrain in mixed precision (bf16 autocast on the CPU)")
    parser.add_argument("--protocols", nargs="+", choices=["knn", "linear", "finetune"],
                        default=["knn", "linear", "finetune"])  # fmt: skip
    parser.add_argument(
        "--labelled", type=positive_int, default=1000,
        help="low-label regime: stratified training images",
    )  # fmt: skip
    parser.add_argument("--train-limit", type=positive_int, help="instead of --labelled: the first N training images")
    parser.add_argument("--test-limit", type=positive_int, help="score on the first N test images (default: all 10000)")
    parser.add_argument("--evaluate-on", choices=["test", "validation"],
                        help="test split (default), or other training images (the default with --sweep)")  # fmt: skip
    parser.add_argument("--linear-epochs", type=positive_int, default=100)
    parser.add_argument("--finetune-epochs", type=positive_int, default=30)
    parser.add_argument(
        "--jobs", type=positive_int, default=2,
        help="steps run at once, each on an equal share of the cores",
    )  # fmt: skip
    parser.add_argument("--ablate", nargs="+", choices=list(ABLATIONS), default=[], help="ablation axes")
    parser.add_argument("--ablate-backbone", default="convnext_atto", help="the backbone the ablations use")
    parser.add_argument("--sweep", action="store_true", help="sweep each family's mask ratio × lr scale")
    parser.add_argument("--budget-curve", nargs="+", type=float, default=[],
                        help="extra pretraining budgets (minutes) of one backbone, for the gain curve")  # fmt: skip
    parser.add_argument("--budget-backbone", help="the backbone of --budget-curve (default: the first of --backbones)")
    parser.add_argument("--stop-after", type=float, metavar="MINUTES",
                        help="start no chain whose estimate ends later than MINUTES after the start")  # fmt: skip
    parser.add_argument("--plan", action="store_true", help="calibrate, print every chain's estimated minutes, stop")
    parser.add_argument(
        "--report-only", action="store_true", help="only write the report, from the ledger alone (no run folder)"
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """The run's settings; names and combinations are checked here so a mistake fails before any work starts."""
    if args.ablate and args.sweep:
        raise SystemExit("compare: --ablate and --sweep are different plans; pick one")
    backbones = [args.ablate_backbone] if args.ablate else args.backbones
    family = args.recipes == "family"
    for name in backbones:
        try:
            check_backbone_name(name)
            if family or args.sweep:
                family_recipe(name)
        except ValueError as error:
            raise SystemExit(f"compare: {error}") from None
    overrides = dict(mask_ratio=args.mask_ratio, decoder=args.decoder, target=args.target)
    if not family:
        overrides = {key: SHARED_DEFAULTS[key] if value is None else value for key, value in overrides.items()}
    if args.budget_curve and (args.minutes is None or args.ablate or args.sweep):
        raise SystemExit("compare: --budget-curve adds wall-time budgets to a backbone comparison: give --minutes")
    if args.budget_backbone is not None and args.budget_backbone not in backbones:
        raise SystemExit(f"compare: --budget-backbone {args.budget_backbone} is not one of --backbones")
    if args.sweep and overrides["mask_ratio"] is not None:
        raise SystemExit("compare: --sweep varies the mask ratio itself; drop --mask-ratio")
    base = Pretraining(
        backbone=backbones[0], sparse=not args.dense_reference, input_size=args.input_size, iters=args.iters,
        batch_size=args.batch_size, recipe=family_recipe(backbones[0]) if family else None, amp=args.amp,
        **overrides,
    )  # fmt: skip
    epochs = args.finetune_epochs
    evaluation = Evaluation(
        protocols=tuple(args.protocols), labelled=None if args.train_limit else args.labelled,
        train_limit=args.train_limit, test_limit=args.test_limit,
        evaluate_on=args.evaluate_on or ("validation" if args.sweep else "test"), linear_epochs=args.linear_epochs,
        finetune=FineTuneRecipe(epochs=epochs, warmup_epochs=max(1, epochs // 10) if epochs > 1 else 0),
    )  # fmt: skip
    return Settings(
        tuple(backbones), tuple(args.seeds), base, evaluation, tuple(args.ablate), args.minutes, family, args.sweep,
        tuple(args.budget_curve), args.budget_backbone if args.budget_curve else None,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from(args)
    out = Path(args.out)
    report = Path(args.report) if args.report else out / "report.md"
    given = sys.argv[1:] if argv is None else argv
    command = "python tools/compare.py " + shlex.join(without_session_options(given))
    if args.plan and args.report_only:
        raise SystemExit("compare: --plan and --report-only are different actions; pick one")
    if args.plan:
        print(show_plan(out, settings, jobs=args.jobs, report=report))
        return
    if args.report_only:
        written = report_from_ledger(settings, report, command, out)
    else:
        written = run_comparison(out, settings, jobs=args.jobs, report=report, command=command,
                                 stop_after=args.stop_after)  # fmt: skip
    print(f"report: {written}")


def without_session_options(argv: list[str]) -> list[str]:
    """The command line without the options that only steer one session (--report-only, --plan, --stop-after M),
    so every chunk's report shows the same command."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--report-only", "--plan"):
            continue
        elif arg == "--stop-after":
            skip = True
        elif not arg.startswith("--stop-after="):
            kept.append(arg)
    return kept


if __name__ == "__main__":
    main()
