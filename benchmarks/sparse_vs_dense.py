"""Sparse encoders against their dense reference (`sparse=False`) in the same run: time, peak memory, FLOPs.

    python benchmarks/sparse_vs_dense.py --backbones resnet50,convnext_tiny --input 224 --batch 8 \
        --mask-ratio 0.75 [--in-chans 3] [--device cpu|cuda] [--json FILE]
    python benchmarks/sparse_vs_dense.py --backbones resnet50,swin_tiny_patch4_window7_224 --sweep 224:8,320:4,448:2

`--sweep SIZE:BATCH,...` measures every backbone at each input size and batch in turn (one table, one JSON).

For each backbone and mode, in training mode:
- time: encoder forward + backward (loss = Σ mean of the stage maps), median of `--repeats` runs after warm-up,
  the dense and sparse steps interleaved (so machine load hits both alike); the sparse encoder gets its plan
  built beforehand, as the data-loader workers supply it in training;
- peak memory: CUDA: `torch.cuda.max_memory_allocated` over one step above the memory held before it;
  CPU: how far one step raises the peak resident set (VmHWM, reset just before the step) above the resident set
  before it, each measured in a fresh subprocess after building the encoder and a small warm-up step, so the
  figure is the step's activations, gradients and workspace, not weights or library code;
- saved for backward: the bytes of the tensors one forward keeps for its backward (each storage once, weights
  left out), counted exactly through `torch.autograd.graph.saved_tensors_hooks`. Whether these scale with the
  visible sites is what decides a training step's memory, and the count has none of the RSS figure's noise;
- FLOPs: forward multiply-adds counted by `hiermae.model.flops.count_flops` (fvcore plus handles for custom ops);
- CPU placement (CPU runs with two or more threads): before every timed round, `cpu_placement.handoff_ratio`
  tells whether the first two CPUs share a last-level cache; the table gives the rounds in which they did. On a VM
  the host may move its vCPUs between such placements, and 2-thread sparse steps run 15–20 % slower when they do
  not share one (see `cpu_placement.py`), so ratios are comparable between runs with like placements.
Works for every name `hiermae.build_encoder` accepts (ResNet, ConvNeXt, Swin, ViT).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial

import torch

from hiermae.backbones.build import build_encoder
from hiermae.masking.masks import RandomMask
from hiermae.model.flops import count_flops
from hiermae.utils.resources import step_peak_rss_bytes

from cpu_placement import handoff_ratio, shares_cache


def make_inputs(
    batch: int, size: int, ratio: float, device: str, channels: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded `channels`-channel images and random-mask visible map."""
    images = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    visible = RandomMask(ratio)(batch, (size // 32, size // 32), torch.arange(batch)).to(device)
    return images, visible


def encoder_for(args: argparse.Namespace, name: str, sparse: bool) -> torch.nn.Module:
    """The encoder `name` (sparse or the dense reference) for the run's input size and channels."""
    return build_encoder(name, sparse=sparse, input_size=args.input, in_chans=args.in_chans)


def train_step(encoder: torch.nn.Module, images: torch.Tensor, visible: torch.Tensor, plan: object = None) -> None:
    """One encoder forward and backward."""
    outputs = encoder(images, visible, plan)
    sum(output.float().mean() for output in outputs).backward()
    encoder.zero_grad(set_to_none=True)


def saved_for_backward_mib(
    encoder: torch.nn.Module, images: torch.Tensor, visible: torch.Tensor, plan: object = None
) -> float:
    """MiB of the tensors one forward of `encoder` keeps for its backward, each storage counted once and the
    encoder's own weights left out: the activations that grow with the input."""
    weights = {parameter.untyped_storage().data_ptr() for parameter in encoder.parameters()}
    storages: dict[int, int] = {}

    def count(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
        outputs = encoder(images, visible, plan)  # kept alive while counting, so no storage address is reused
    del outputs
    return sum(storages.values()) / 2**20


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved_step_seconds(steps: dict[str, Callable[[], None]], device: str, warmup: int, repeats: int,
                             before_round: Callable[[], None] | None = None) -> dict[str, float]:  # fmt: skip
    """Median wall-clock time of each step, the steps taking turns so that load on the machine hits all alike;
    `before_round` runs before each timed round."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        if before_round is not None:
            before_round()
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_bytes(args: argparse.Namespace, name: str, sparse: bool) -> int:
    """Peak memory of one step (see the module docstring for what is measured on each device)."""
    if args.device == "cuda":
        encoder = encoder_for(args, name, sparse).to("cuda").train()
        images, visible = make_inputs(args.batch, args.input, args.mask_ratio, "cuda", args.in_chans)
        train_step(encoder, images, visible)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        train_step(encoder, images, visible)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    command = [sys.executable, __file__, "--memory-probe", name, "--sparse", str(int(sparse)),
               "--input", str(args.input), "--batch", str(args.batch), "--mask-ratio", str(args.mask_ratio),
               "--in-chans", str(args.in_chans)]
    return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1])


def memory_probe(args: argparse.Namespace) -> None:
    """Subprocess body: print how far one full-size step raises the peak RSS (see `hiermae.utils.resources`)."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    encoder = encoder_for(args, args.memory_probe, bool(args.sparse)).train()
    warmup = make_inputs(2, args.input, args.mask_ratio, "cpu", args.in_chans)
    train_step(encoder, *warmup)  # warm-up: allocator, library code
    images, visible = make_inputs(args.batch, args.input, args.mask_ratio, "cpu", args.in_chans)
    print(step_peak_rss_bytes(lambda: train_step(encoder, images, visible)))


def measure(args: argparse.Namespace, name: str) -> dict[str, dict[str, float | list[float]]]:
    """Time, memory and FLOPs of the sparse encoder and the dense reference on the same weights and mask."""
    dense = encoder_for(args, name, False).to(args.device).train()
    sparse = encoder_for(args, name, True).to(args.device).train()
    sparse.load_state_dict({k: v for k, v in dense.state_dict().items() if k != "mask_token"})
    images, visible = make_inputs(args.batch, args.input, args.mask_ratio, args.device, args.in_chans)
    encoders = {"dense": dense, "sparse": sparse}
    plans = {"dense": None, "sparse": sparse.plan_for(visible, args.device)}
    seconds, handoffs = {}, []
    if not args.memory_only:
        steps = {mode: partial(train_step, encoder, images, visible, plans[mode]) for mode, encoder in encoders.items()}
        probe = args.device == "cpu" and torch.get_num_threads() > 1
        placement = (lambda: handoffs.append(handoff_ratio())) if probe else None
        seconds = interleaved_step_seconds(steps, args.device, args.warmup, args.repeats, placement)
    results: dict[str, dict[str, float | list[float]]] = {}
    for mode, encoder in encoders.items():
        results[mode] = {"step_ms": 1000 * seconds[mode]} if seconds else {}
        results[mode]["peak_mib"] = peak_memory_bytes(args, name, mode == "sparse") / 2**20
        results[mode]["saved_mib"] = saved_for_backward_mib(encoder, images, visible, plans[mode])
        if not args.memory_only:
            results[mode]["gflops"] = count_flops(encoder, (images, visible)) / 1e9
        print(f"{name} {mode}: " + ", ".join(f"{k} {v:.1f}" for k, v in results[mode].items()), flush=True)
    if handoffs and None not in handoffs:
        results["cpu_placement"] = {"handoff_ratios": handoffs}
    return results


def placement_cell(results: dict[str, dict[str, float | list[float]]]) -> str:
    """'k/n': in k of the n timed rounds the first two CPUs shared a last-level cache ('–': not probed)."""
    if "cpu_placement" not in results:
        return "–"
    ratios = results["cpu_placement"]["handoff_ratios"]
    return f"{sum(map(shares_cache, ratios))}/{len(ratios)}"


def profile_step(args: argparse.Namespace, name: str, top: int = 12) -> None:
    """Print the ops that dominate one forward+backward step of each mode, to explain misses.

    CPU: self CPU time. CUDA: self GPU time of the kernels, plus the host's total, so idle GPU time shows.
    """
    from torch.profiler import ProfilerActivity, profile

    on_gpu = args.device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    images, visible = make_inputs(args.batch, args.input, args.mask_ratio, args.device, args.in_chans)
    for sparse in (False, True):
        encoder = encoder_for(args, name, sparse).to(args.device).train()
        train_step(encoder, images, visible)
        synchronize(args.device)
        with profile(activities=activities) as prof:
            train_step(encoder, images, visible)
            synchronize(args.device)
        sort = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
        print(f"\n{name} {'sparse' if sparse else 'dense'}: top ops by {sort}")
        print(prof.key_averages().table(sort_by=sort, row_limit=top))


def markdown_table(runs: list[tuple[int, int, dict[str, dict[str, dict[str, float | list[float]]]]]]) -> str:
    """One row per (input size, batch, backbone): dense, sparse and their ratio for each figure."""
    lines = [
        "| input, batch | backbone | fwd+bwd dense ms | sparse ms | speed-up | peak dense MiB | sparse MiB | ratio "
        "| saved for backward dense MiB | sparse MiB | ratio | GFLOPs dense | sparse | ratio | rounds on one L3 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, batch, results in runs:
        for name, r in results.items():
            d, s = r["dense"], r["sparse"]
            lines.append(
                f"| {size} px, b{batch} | {name} | {d['step_ms']:.0f} | {s['step_ms']:.0f} "
                f"| {d['step_ms'] / s['step_ms']:.2f}x | {d['peak_mib']:.0f} | {s['peak_mib']:.0f} "
                f"| {s['peak_mib'] / d['peak_mib']:.2f} | {d['saved_mib']:.0f} | {s['saved_mib']:.0f} "
                f"| {s['saved_mib'] / d['saved_mib']:.2f} | {d['gflops']:.2f} | {s['gflops']:.2f} "
                f"| {s['gflops'] / d['gflops']:.2f} | {placement_cell(r)} |"
            )
    return "\n".join(lines)


def sweep_points(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(input size, batch) pairs to measure: `--sweep`, or the one `--input`, `--batch`."""
    if not args.sweep:
        return [(args.input, args.batch)]
    try:
        return [(int(size), int(batch)) for size, batch in (point.split(":") for point in args.sweep.split(","))]
    except ValueError:
        raise SystemExit(f"--sweep takes SIZE:BATCH pairs, comma-separated (224:8,448:2), not {args.sweep!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="resnet50,convnext_tiny")
    parser.add_argument("--input", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sweep", help="SIZE:BATCH,...: measure at each size and batch (instead of --input, --batch)")
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--in-chans", type=int, default=3, help="image channels (1 grey, 3 RGB, more for bands)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--profile", action="store_true", help="only print the top ops of one step per mode")
    parser.add_argument("--memory-only", action="store_true", help="only measure peak memory")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    parser.add_argument("--sparse", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_probe:
        memory_probe(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = []
    for size, batch in sweep_points(args):
        point = argparse.Namespace(**{**vars(args), "input": size, "batch": batch})
        if args.profile:
            for name in args.backbones.split(","):
                profile_step(point, name)
            continue
        runs.append((size, batch, {name: measure(point, name) for name in args.backbones.split(",")}))
    if args.profile:
        return
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"\n{args.in_chans} channels, mask ratio {args.mask_ratio}, {device}, torch {torch.__version__}")
    if not args.memory_only:
        print(markdown_table(runs))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"args": vars(args), "device": device,
                       "runs": [{"input": size, "batch": batch, "results": results} for size, batch, results in runs]},
                      file, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
