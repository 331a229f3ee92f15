"""Pack an image folder into WebDataset shards for the `ImageShards` dataset (streaming, any number of ranks).

    python tools/make_shards.py SRC_FOLDER --out SHARD_FOLDER [--samples-per-shard 1000] [--seed 0 | --no-shuffle]
                                [--channels C]

SRC_FOLDER is listed as `ImageFolder` lists it (class = top-level folder, symlinked folders followed). Files are
stored unchanged, in an order shuffled once by --seed so that every shard mixes the classes. Use at least
(ranks × data-loader workers) shards, e.g. 1000 samples per shard for ImageNet's 1.28 M images gives 1282.
--channels records how `ImageShards` reads the images (1 grey, 3 RGB, other: multi-band TIFFs; default 3).
"""

import argparse
import sys
import time
from pathlib import Path

from hiermae.data import pack_folder
from hiermae.engine import ToolParser, folder_to_write, positive_int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ToolParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="image folder (flat, or one sub-folder per class)")
    parser.add_argument("--out", type=folder_to_write, required=True, help="folder for the shards and manifest.json")
    parser.add_argument("--samples-per-shard", type=int, default=1000, help="images per tar file (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the one-time shuffle of the file order")
    parser.add_argument("--no-shuffle", action="store_true", help="keep the sorted file order")
    parser.add_argument("--channels", type=positive_int, help="channels to read (1 grey, 3 RGB, other: TIFF bands)")
    args = parser.parse_args(argv)
    args.out = Path(args.out)
    if args.samples_per_shard < 1:
        parser.error(f"--samples-per-shard must be at least 1, got {args.samples_per_shard}")
    if not args.source.is_dir():
        parser.error(f"source folder {args.source} does not exist or is not a folder")
    if args.out.resolve() == args.source.resolve() or args.source.resolve() in args.out.resolve().parents:
        parser.error(f"--out {args.out} lies inside the source folder {args.source}; pick a folder outside it")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    seed = None if args.no_shuffle else args.seed
    try:
        shards = pack_folder(args.source, args.out, args.samples_per_shard, seed, args.channels)
    except (OSError, ValueError) as error:  # e.g. a listed file that vanished or became a FIFO since the listing
        print(f"make_shards: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    total = sum(shard.count for shard in shards)
    print(f"packed {total} images from {args.source} into {len(shards)} shards in {args.out} "
          f"({time.perf_counter() - start:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
