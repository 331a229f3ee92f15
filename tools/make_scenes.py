"""Generate a COCO-format scene data set (boxes, instance masks, label maps) for detection and segmentation.

python tools/make_scenes.py --out data/scenes [--mode stamps|shapes] [--train 200] [--val 50]
                            [--size 128] [--seed 0] [--max-objects 4]
"""

import argparse

from hiermae.downstream.scenes import categories, generate_scenes
from hiermae.engine import ToolParser, folder_to_write, number, positive_int, random_seed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ToolParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=folder_to_write, required=True, help="data root to write images/, semantic/, annotations/ into"
    )
    parser.add_argument("--mode", choices=["stamps", "shapes"], default="stamps", help="cut-out photos or shapes")
    parser.add_argument("--train", type=positive_int, default=200, help="number of training images")
    parser.add_argument("--val", type=positive_int, default=50, help="number of validation images")
    parser.add_argument("--size", type=number(int, minimum=32), default=128, help="image side in pixels")
    parser.add_argument("--seed", type=random_seed, default=0, help="seed; the same seed writes the same scenes")
    parser.add_argument("--max-objects", type=positive_int, default=4, help="most objects pasted per image")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    files = generate_scenes(
        args.out,
        mode=args.mode,
        counts={"train": args.train, "val": args.val},
        size=args.size,
        seed=args.seed,
        max_objects=args.max_objects,
    )
    print(f"{args.mode} scenes in {args.out}; categories: {', '.join(categories(args.mode))}")
    for split, path in files.items():
        print(f"  {split}: {path}")


if __name__ == "__main__":
    main()
