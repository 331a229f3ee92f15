"""Measure every backend of every stride-1 spatial conv shape in ResNet and ConvNeXt; print the fastest.

    python benchmarks/sparse_backends.py [--input 224 --batch 8 --mask-ratio 0.75 --device cpu --json FILE]

Times forward + backward (input and weight gradients) of one layer on the visible-site rows, median of
`--repeats` after warm-up, with the site tables already built (they are built once per stage and batch).
The "choice" lines are the entries of `hiermae.sparse.backends.MEASURED`.
"""

import argparse
import importlib.util
import json
import statistics
import time

import torch
from torch import nn

from hiermae.masking.masks import RandomMask
from hiermae.sparse.backends import CONV_BACKENDS, DEPTHWISE_BACKENDS
from hiermae.sparse.sites import SitePyramid
from hiermae.sparse.sparse_engine import run_same_conv

# (kind, kernel, stride, channels): ResNet-50 3x3 convs per stage and ConvNeXt-T depthwise 7x7 convs per stage.
LAYERS = [("conv", 3, 4, 64), ("conv", 3, 8, 128), ("conv", 3, 16, 256), ("conv", 3, 32, 512)] + [
    ("depthwise", 7, 4, 96), ("depthwise", 7, 8, 192), ("depthwise", 7, 16, 384), ("depthwise", 7, 32, 768)
]


def time_backend(backend: str, conv: nn.Conv2d, rows: torch.Tensor, sites, args) -> float:
    """Median seconds of forward + backward of one conv on the rows with `backend`."""
    def step() -> None:
        out = run_same_conv(backend, rows, sites, conv, conv.padding[0])
        out.sum().backward()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.repeats):
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if args.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the timings to this file")
    args = parser.parse_args()
    visible = RandomMask(args.mask_ratio)(args.batch, (args.input // 32,) * 2, torch.arange(args.batch))
    pyramid = SitePyramid(visible.to(args.device), 32)
    records = []
    for kind, kernel, stride, channels in LAYERS:
        groups = channels if kind == "depthwise" else 1
        conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=groups).to(args.device)
        sites = pyramid.at(stride)
        rows = torch.randn(sites.num, channels, device=args.device, requires_grad=True)
        backends = DEPTHWISE_BACKENDS if kind == "depthwise" else CONV_BACKENDS
        if importlib.util.find_spec("spconv") is None:  # e.g. a GPU machine without spconv's CUDA wheel
            backends = [backend for backend in backends if backend != "spconv"]
        timings = {backend: 1000 * time_backend(backend, conv, rows, sites, args) for backend in backends}
        best = min(timings, key=timings.get)
        records.append({"kind": kind, "kernel": kernel, "stride": stride, "channels": channels,
                        "per_unit": sites.per_unit, "ms": timings, "best": best})
        print(f"{kind} {kernel}x{kernel} stride {stride} C={channels}: "
              + ", ".join(f"{b} {t:.2f} ms" for b, t in timings.items()), flush=True)
    print("\nchoice lines for hiermae.sparse.backends.MEASURED:")
    for r in records:
        print(f'    ("{args.device}", "{r["kind"]}", {r["kernel"]}, {r["per_unit"]}): "{r["best"]}",')
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"args": vars(args), "records": records}, file, indent=2)


if __name__ == "__main__":
    main()
