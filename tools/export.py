"""Export a pretraining checkpoint's encoder for timm, mmdet or mmseg, and print the strict-load key report.

    python tools/export.py CKPT --format timm|mmdet|mmseg --out FILE[.pth|.safetensors] [--backbone NAME]
                           [--input-size S] [--target-config MMDET_OR_MMSEG_CONFIG] [--trust-checkpoint]

CKPT is a hiermae pretraining checkpoint (backbone and input size are read from its config) or a plain timm
state dict (then --backbone is required); it is read as data (--trust-checkpoint: in full, for older files of a
trusted origin). FILE is replaced only by a complete, checked export. Exits with status 2 and the reason (the key
report on a mismatch) when the export cannot be made.
"""

import argparse
import sys

from hiermae.checkpoints import CheckpointError
from hiermae.downstream.export import FORMATS, OutputPathError, export_checkpoint
from hiermae.engine import ToolParser, positive_int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ToolParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="pretraining checkpoint (mmengine) or timm state dict")
    parser.add_argument("--format", choices=FORMATS, required=True, help="whose backbone names to write")
    parser.add_argument("--out", required=True, help="file to write (.safetensors for timm: a pickle-free file)")
    parser.add_argument("--backbone", help="timm name of the encoder (overrides the checkpoint's config)")
    parser.add_argument("--input-size", type=positive_int, help="timm format: image size of the target model")
    parser.add_argument("--target-config", help="mmdet/mmseg format: config whose model.backbone is the target")
    parser.add_argument(
        "--trust-checkpoint", action="store_true", help="unpickle CKPT in full (only for files of a trusted origin)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        result = export_checkpoint(
            args.checkpoint,
            args.format,
            args.out,
            backbone=args.backbone,
            input_size=args.input_size,
            target_config=args.target_config,
            trust=args.trust_checkpoint,
        )
    except (CheckpointError, OutputPathError, OSError) as error:
        print(f"export failed: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
