"""The `make demo` job: a few minutes of masked pretraining on the embedded data, then where everything is.

    python tools/demo.py CONFIG [--work-dir D] [--cfg-options k=v ...]
"""

import argparse

from mmengine.config import DictAction

import hiermae  # noqa: F401  (registers hiermae's models, datasets and hooks)
from hiermae.checkpoints import configure_checkpoint_io
from hiermae.engine import ReconstructionHook, TrainingSummaryHook, build_config, build_runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--work-dir", default="work_dirs/demo")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = parser.parse_args()
    configure_checkpoint_io()
    runner = build_runner(build_config(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options))
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
