"""Forward FLOPs of masked pretraining per image: hiermae's sparse path and the dense reference vs dense inference.

    python tools/flops.py BACKBONE [BACKBONE ...] [--input-size 224] [--mask-ratio 0.75]
                          [--decoder unet|transformer|linear] [--target norm_pixels|pixels|hog] [--json FILE]

For each backbone: encoder and decoder parameters, the dense encoder on a whole image (dense inference), and one
pretraining forward (encoder on the masked image; decoder, target and loss) for hiermae (sparse=True) and the
dense reference (sparse=False, SimMIM-style mask token), with ratios to dense inference. Multiply-adds counted by
`hiermae.model.flops.pretraining_flops` (fvcore, 1 multiply-add = 1 FLOP); a training step is about 3x the forward.
"""

import argparse
import json

from hiermae.engine import ToolParser, file_to_write, image_size, ratio
from hiermae.model import PretrainingFlops, pretraining_flops


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ToolParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbones", nargs="+", metavar="BACKBONE", help="timm names")
    parser.add_argument("--input-size", type=image_size, default=224, help="image side in pixels")
    parser.add_argument("--mask-ratio", type=ratio, default=0.75, help="fraction of mask units hidden")
    parser.add_argument(
        "--decoder", choices=["unet", "transformer", "linear"],
        help="decoder (default: the pretrainer's, transformer for ViT and unet otherwise)",
    )  # fmt: skip
    parser.add_argument("--target", choices=["norm_pixels", "pixels", "hog"], default="norm_pixels")
    parser.add_argument("--json", type=file_to_write, help="also write the figures to this file")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, backbone: str) -> tuple[PretrainingFlops, PretrainingFlops]:
    """(sparse, dense reference) figures for one backbone."""
    cfg = {"target": {"type": args.target}}
    if args.decoder:
        cfg["decoder"] = {"type": args.decoder}
    sparse, dense = (
        pretraining_flops(backbone, args.input_size, args.mask_ratio, sparse=mode, **cfg) for mode in (True, False)
    )
    return sparse, dense


def gflops(flops: int) -> str:
    """FLOPs as GFLOPs with three decimals."""
    return f"{flops / 1e9:.3f}"


def table(args: argparse.Namespace, sparse: PretrainingFlops, dense: PretrainingFlops) -> str:
    """A markdown table for one backbone, under a line naming the setting and the parameter counts."""
    heading = (
        f"{sparse.backbone}: {sparse.input_size} px, mask ratio {sparse.mask_ratio}, decoder "
        f"{args.decoder or 'default'}, target {args.target}; parameters: encoder "
        f"{sparse.encoder_parameters / 1e6:.2f} M, decoder {sparse.decoder_parameters / 1e6:.2f} M"
    )
    lines = [
        heading,
        "| forward GFLOPs per image | encoder | decoder+target+loss | total "
        "| encoder / dense inference | total / dense inference |",
        "|---|---|---|---|---|---|",
        f"| dense inference (nothing masked) | {gflops(sparse.dense_inference)} | - "
        f"| {gflops(sparse.dense_inference)} | 1.00 | 1.00 |",
    ]
    for name, result in (("pretraining, hiermae (sparse)", sparse), ("pretraining, dense reference", dense)):
        lines.append(
            f"| {name} | {gflops(result.encoder)} | {gflops(result.decoder)} | {gflops(result.total)} "
            f"| {result.encoder_ratio:.2f} | {result.total_ratio:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    records = []
    for backbone in args.backbones:
        sparse, dense = measure(args, backbone)
        print(table(args, sparse, dense) + "\n", flush=True)
        records.append({"backbone": backbone, "sparse": sparse.as_dict(), "dense": dense.as_dict()})
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"args": vars(args), "results": records}, file, indent=2)


if __name__ == "__main__":
    main()
