"""The `make demo` job: a few minutes of masked pretraining on the embedded data, then where everything is.

    python tools/demo.py CONFIG [--work-dir D] [--cfg-options k=v ...]
"""

import argparse
import sys

import hiermae  # noqa: F401  (registers hiermae's models, datasets and hooks)
from hiermae.checkpoints import configure_checkpoint_io
from hiermae.engine import (
    ConfigOptions,
    ConfigValueError,
    ReconstructionHook,
    ToolParser,
    TrainingSummaryHook,
    UnknownConfigKeyError,
    build_config,
    build_runner,
    existing_file,
    folder_to_write,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ToolParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=existing_file)
    parser.add_argument("--work-dir", type=folder_to_write, default="work_dirs/demo")
    parser.add_argument("--cfg-options", nargs="+", action=ConfigOptions, metavar="KEY=VALUE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_checkpoint_io()
    try:
        cfg = build_config(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options)
    except (ConfigValueError, UnknownConfigKeyError) as error:  # a setting to fix: one line, no traceback
        print(f"demo: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    runner = build_runner(cfg)
    runner.train()
    summary = next(h for h in runner.hooks if isinstance(h, TrainingSummaryHook))
    grid = next(h for h in runner.hooks if isinstance(h, ReconstructionHook)).last_path
    first, last, count = summary.loss_means()
    print("\n=== hiermae demo ===")
    print(f"backbone:        {runner.cfg.model.backbone} (sparse={runner.cfg.model.sparse}), {runner.iter} iterations")
    print(f"loss at start:   {first:.4f} (mean of the first {count} iterations)")
    print(f"loss at end:     {last:.4f} (mean of the last {count} iterations)")
    print(f"checkpoint:      {runner.work_dir}/iter_{runner.iter}.pth")
    print(f"reconstructions: {grid}  (original | masked input | prediction | prediction pasted on visible units)")


if __name__ == "__main__":
    main()
