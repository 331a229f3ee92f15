"""Train from an mmengine config: masked pretraining, or the downstream detection / segmentation configs.

    python tools/train.py CONFIG [--work-dir D] [--resume [CKPT]] [--resume-anyway] [--amp] [--compile]
                                 [--cfg-options k=v ...] [--launcher none|pytorch] [--trust-checkpoint]

Without --work-dir each run writes to a new folder `work_dirs/<config name>/<start time>` (--resume: the newest
one holding a checkpoint). A new run into a work dir that holds another run's checkpoints is refused; --resume
under other model or data settings than the checkpoint's is refused unless --resume-anyway is given.
"""

import argparse
import os
import sys

import hiermae  # noqa: F401  (registers hiermae's models, datasets and hooks)
from hiermae.checkpoints import check_run_checkpoint, configure_checkpoint_io
from hiermae.engine import (
    ConfigOptions,
    ConfigValueError,
    ToolParser,
    UnknownConfigKeyError,
    build_config,
    build_runner,
    claim_work_dir,
    cleanup_on_sigterm,
    existing_file,
    folder_to_write,
    init_cpu_process_group,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ToolParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=existing_file, help="path of an mmengine config file")
    parser.add_argument("--work-dir", type=folder_to_write, help="where logs, checkpoints and reconstructions go")
    parser.add_argument(
        "--resume", nargs="?", const="auto", default=None,
        help="resume from CKPT, or from the work dir's last checkpoint when no path is given",
    )  # fmt: skip
    parser.add_argument(
        "--resume-anyway", action="store_true",
        help="resume even when the config's model or data settings differ from the checkpoint's",
    )  # fmt: skip
    parser.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 on GPU)")
    parser.add_argument(
        "--compile", action="store_true",
        help="torch.compile the training step (CUDA graphs on a GPU); the first steps take the compile time",
    )  # fmt: skip
    parser.add_argument(
        "--trust-checkpoint", action="store_true",
        help="unpickle --resume / load_from / init_cfg checkpoints in full (can run code in them; default: data only)",
    )  # fmt: skip
    parser.add_argument(
        "--cfg-options", nargs="+", action=ConfigOptions, metavar="KEY=VALUE",
        help="override config keys (values keep their spaces; a,b and [a, b] are lists; quote to keep text as is)",
    )  # fmt: skip
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none", help="job launcher")
    args = parser.parse_args(argv)
    if args.resume_anyway and not args.resume:
        parser.error("--resume-anyway is an option of --resume")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.launcher == "pytorch" and "LOCAL_RANK" not in os.environ:
        raise SystemExit("--launcher pytorch must run under torchrun (LOCAL_RANK is not set)")
    configure_checkpoint_io(trust=args.trust_checkpoint)
    try:
        cfg = build_config(
            args.config,
            work_dir=args.work_dir,
            resume=args.resume,
            amp=args.amp,
            cfg_options=args.cfg_options,
            launcher=args.launcher,
            compile=args.compile,
        )
    except (ConfigValueError, UnknownConfigKeyError) as error:  # a setting to fix: one line, no traceback
        print(f"train: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.launcher == "pytorch":
        init_cpu_process_group(cfg)
    removed = claim_work_dir(cfg)
    with cleanup_on_sigterm():
        runner = build_runner(cfg)
        for path in removed:
            runner.logger.info(f"removed {path}, left by a save that was killed")
        changed = check_run_checkpoint(
            runner.model, cfg, trust=args.trust_checkpoint, allow_changed_settings=args.resume_anyway
        )
        if changed:
            runner.logger.warning(f"--resume-anyway: resuming under changed settings: {'; '.join(changed)}")
        runner.train()


if __name__ == "__main__":
    main()
