"""Device→host synchronisations and op launches of one encoder forward+backward, for every family.

    python benchmarks/host_syncs.py [--device cpu|cuda] [--backbones ...] [--batch 8] [--input 224] [--mask-ratio 0.75]

Counted with `sync_counter` (see its docstring for what counts as a sync and as a device op), per phase:
`plan (host)` (the encoder's planner on a CPU copy of the mask: in training this runs in a data-loader worker),
`plan copy` (the plan's one non-blocking copy to the device), `forward`, `backward`. Three runs per backbone:
- `dense reference, planned`: the masked-dense / mask-token model, given its (empty) plan as in training; on the
  CPU its BatchNorm checks the visible-site count (one read each), which it skips on a GPU;
- `sparse, planned`: the training path, plan built on the host and passed in (`encoder(images, visible, plan)`);
- `sparse, visible on device`: the plain call `encoder(images, visible)` with the mask already on the device,
  which copies it back to plan it (one sync).
An encoder without planners (an older checkout) gets only plain calls, so the same script measures "before".
On the CPU every op outside the host phase stands for a device op.
"""

import argparse
from typing import Any
from unittest import mock

import torch

from hiermae.backbones.build import build_encoder
from hiermae.masking.masks import RandomMask
from hiermae.masking.plans import to_device

from sync_counter import Tally, counting

PHASES = ("plan (host)", "plan copy", "forward", "backward")


def backward_of(outputs: list[torch.Tensor]) -> None:
    sum(output.float().mean() for output in outputs).backward()


def count_planned(encoder: torch.nn.Module, images: torch.Tensor, visible: torch.Tensor, on_gpu: bool) -> Tally:
    """The training path: plan on the host from a CPU mask, one copy, then the step."""
    host_visible = visible.cpu()
    planner = encoder.planner(images.device.type).calibrated([host_visible])
    with counting(on_gpu) as tally:
        with tally.during("plan (host)"):
            plan = planner(host_visible)
        with tally.during("plan copy"):
            plan = to_device(plan, images.device)
            device_visible = to_device(host_visible, images.device)
        with tally.during("forward"):
            outputs = encoder(images, device_visible, plan)
        with tally.during("backward"):
            backward_of(outputs)
    return tally


def count_plain(encoder: torch.nn.Module, images: torch.Tensor, visible: torch.Tensor, on_gpu: bool) -> Tally:
    """`encoder(images, visible)` with `visible` on the device; its planner (if any) is host work."""
    with counting(on_gpu) as tally:
        with tally.during("forward"), planner_on_host(encoder, tally):
            outputs = encoder(images, visible)
        with tally.during("backward"):
            backward_of(outputs)
    return tally


def planner_on_host(encoder: torch.nn.Module, tally: Tally) -> Any:
    """Count the calls of the encoder's cached planners (built by the warm-up) as host work; a no-op for encoders
    without planners."""
    planners = encoder.__dict__.get("_planners", {})

    def on_host(plan: Any) -> Any:
        def planned(visible: torch.Tensor) -> Any:
            with tally.during("plan (host)"):
                return plan(visible)

        return planned

    return mock.patch.dict(planners, {device: on_host(plan) for device, plan in planners.items()})


def report(label: str, tally: Tally) -> dict[str, int]:
    """Print one line per phase and the sync ops by name; return the totals."""
    print(f"\n{label}")
    print(f"  {'phase':<14} {'syncs':>6} {'device ops':>11} {'host ops':>9}")
    for phase in PHASES:
        syncs = tally.total_syncs(phase)
        print(f"  {phase:<14} {syncs:>6} {tally.device_ops[phase]:>11} {tally.host_ops[phase]:>9}")
    totals = {
        "syncs": tally.total_syncs(),
        "device_ops": sum(tally.device_ops.values()),
        "host_ops": sum(tally.host_ops.values()),
    }
    print(f"  {'total':<14} {totals['syncs']:>6} {totals['device_ops']:>11} {totals['host_ops']:>9}")
    for line in tally.sync_names():
        print(f"    {line}")
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="resnet50,convnext_tiny,swin_tiny_patch4_window7_224,"
                        "vit_small_patch16_224")  # fmt: skip
    parser.add_argument("--input", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    on_gpu = args.device == "cuda"
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.input, args.input).to(args.device)
    grid = (args.input // 32, args.input // 32)
    visible = RandomMask(args.mask_ratio)(args.batch, grid, torch.arange(args.batch)).to(args.device)
    print(f"{args.input} px, batch {args.batch}, mask {args.mask_ratio}, {args.device}")
    summary = []
    for name in args.backbones.split(","):
        dense = build_encoder(name, sparse=False, input_size=args.input).to(args.device).train()
        sparse = build_encoder(name, sparse=True, input_size=args.input).to(args.device).train()
        for encoder in (dense, sparse):
            backward_of(encoder(images, visible))  # warm-up outside the count (lazy initialisation)
        if hasattr(sparse, "planner"):
            runs = [("dense reference, planned", count_planned(dense, images, visible, on_gpu)),
                    ("sparse, planned", count_planned(sparse, images, visible, on_gpu))]  # fmt: skip
        else:
            runs = [("dense reference", count_plain(dense, images, visible, on_gpu))]
        runs.append(("sparse, visible on device", count_plain(sparse, images, visible, on_gpu)))
        for label, tally in runs:
            summary.append((name, label, report(f"{name}: {label}", tally)))
    print("\n| backbone | run | syncs | device ops | host ops |\n|---|---|---|---|---|")
    for name, label, totals in summary:
        print(f"| {name} | {label} | {totals['syncs']} | {totals['device_ops']} | {totals['host_ops']} |")


if __name__ == "__main__":
    main()
