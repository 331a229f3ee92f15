"""Images/s and peak memory of the sparse encoder and the whole pretraining step against their dense baselines,
eager and compiled, measured in one process.

    python benchmarks/train_step.py [--device cuda|cpu] [--backbones ...] [--batches 32,128] [--input 224]
        [--mask-ratio 0.75] [--compiled-batches 128] [--deadline 420] [--json FILE]

Runs, per backbone and batch size (in the priority order of `plan_runs`):
- scope `encoder`: encoder forward + backward (loss = Σ mean of the stage maps), bf16 autocast;
- scope `step`: the whole training step: host-drawn mask and plan copied to the device in one non-blocking copy,
  encoder, decoder, target and loss under bf16 autocast, backward, AdamW (fused on a GPU);
each for `sparse` (hiermae), `dense` (the masked-dense reference: SparK-style for CNNs, SimMIM mask tokens for Swin
and ViT; the same model with sparse=False) and, for information, `timm` (timm's own model with nothing masked:
classification forward, cross-entropy, AdamW — the cost of a supervised step). Masks cycle through 4 random
masks drawn (and planned) before timing, as data-loader workers would supply them, so the compiled runs also show
that other masks reuse the compiled graph. Compiled runs (`torch.compile`, mode "reduce-overhead" = CUDA graphs
on a GPU) are measured for the `--compiled-batches` after every eager run. Time: median of `--repeats` steps
after `--warmup` (the first compiled step's time is reported as compile time); peak memory: the most allocated
during the timed steps above what was allocated before them (CUDA), or the peak RSS rise (CPU).
Measurements run in priority order and stop at `--deadline` seconds; every finished one is in the JSON file.
"""

import argparse
import json
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from hiermae.backbones.build import encoder_family
from hiermae.model.pretrainer import build_pretrainer
from hiermae.utils.resources import step_peak_rss_bytes

MASKS_IN_RING = 4


@dataclass
class Result:
    backbone: str
    scope: str
    kind: str
    batch: int
    compiled: bool
    ms: float = 0.0
    images_per_s: float = 0.0
    peak_mib: float = 0.0
    compile_s: float = 0.0
    error: str = ""


@dataclass
class Case:
    """A step function with what it needs, ready to time."""

    step: Callable[[int], Any]  # step(i) runs step number i
    modules: list[torch.nn.Module] = field(default_factory=list)


def pretrainer_case(args: argparse.Namespace, backbone: str, sparse: bool, batch: int, scope: str, compiled: bool
                    ) -> Case:  # fmt: skip
    """Sparse model or its dense reference: the encoder alone, or the whole step with decoder and AdamW."""
    torch.manual_seed(0)
    model = build_pretrainer(backbone, sparse=sparse, mask_ratio=args.mask_ratio, input_size=args.input,
                             compile=compiled).to(args.device).train()  # fmt: skip
    grid = (args.input // 32, args.input // 32)
    planner = model.mask_planner(args.device)
    ring = [planner.draw(batch, grid, torch.arange(batch) + k * batch) for k in range(MASKS_IN_RING)]
    images = torch.randn(batch, 3, args.input, args.input, device=args.device)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16)
    if scope == "encoder":
        encoder = model.encoder
        run = encoder
        if compiled:
            options = {"mode": "reduce-overhead"} if args.device == "cuda" else {}
            run = torch.compile(encoder, dynamic=False, **options)

        def encoder_step(i: int) -> None:
            masked = model.masked_batch(images, {"masked": ring[i % MASKS_IN_RING]}, None)
            if compiled and args.device == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            with autocast:
                outputs = run(images, masked.visible, masked.plan)
            sum(output.float().mean() for output in outputs).backward()

        return Case(encoder_step, [model])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=args.device == "cuda")

    def training_step(i: int) -> None:
        with autocast:
            loss = model(images, {"masked": ring[i % MASKS_IN_RING]}, mode="loss")["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return Case(training_step, [model])


def timm_case(args: argparse.Namespace, backbone: str, batch: int, scope: str, compiled: bool) -> Case:
    """timm's model with nothing masked: features (encoder scope) or a supervised classification step."""
    torch.manual_seed(0)
    model = encoder_family(backbone).create_timm_model(backbone, args.input, num_classes=1000)
    model = model.to(args.device).train()
    images = torch.randn(batch, 3, args.input, args.input, device=args.device)
    labels = torch.randint(0, 1000, (batch,), device=args.device)
    forward = model.forward_features if scope == "encoder" else model
    if compiled:
        options = {"mode": "reduce-overhead"} if args.device == "cuda" else {}
        forward = torch.compile(forward, dynamic=False, **options)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=args.device == "cuda")

    def step(i: int) -> None:
        if compiled and args.device == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(args.device, dtype=torch.bfloat16):
            out = forward(images)
            loss = out.float().mean() if scope == "encoder" else F.cross_entropy(out.float(), labels)
        loss.backward()
        if scope == "step":
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return Case(step, [model])


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(args: argparse.Namespace, result: Result) -> Result:
    """Build the case, warm up (compiling if asked), then time `--repeats` steps and take the peak memory."""
    if result.kind == "timm":
        case = timm_case(args, result.backbone, result.batch, result.scope, result.compiled)
    else:
        case = pretrainer_case(args, result.backbone, result.kind == "sparse", result.batch, result.scope,
                               result.compiled)  # fmt: skip
    start = time.perf_counter()
    case.step(0)
    synchronize(args.device)
    result.compile_s = time.perf_counter() - start if result.compiled else 0.0
    for i in range(1, args.warmup):
        case.step(i)
    synchronize(args.device)
    before = torch.cuda.memory_allocated() if args.device == "cuda" else 0
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []

    def timed_steps() -> None:
        for i in range(args.repeats):
            synchronize(args.device)
            tick = time.perf_counter()
            case.step(args.warmup + i)
            synchronize(args.device)
            times.append(time.perf_counter() - tick)

    if args.device == "cuda":
        timed_steps()
        result.peak_mib = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        result.peak_mib = step_peak_rss_bytes(timed_steps) / 2**20
    result.ms = 1000 * statistics.median(times)
    result.images_per_s = result.batch / (result.ms / 1000)
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return result


def plan_runs(args: argparse.Namespace) -> list[Result]:
    """Every measurement, most important first (the deadline cuts the tail): eager training steps at the largest
    batch, compiled sparse and dense-reference steps, eager steps at the other batches, eager encoders, the rest."""
    backbones = args.backbones.split(",")
    batches = sorted((int(b) for b in args.batches.split(",")), reverse=True)
    compiled_batches = sorted((int(b) for b in args.compiled_batches.split(",") if b), reverse=True)
    everything = ("sparse", "dense", "timm")
    largest, others = batches[:1], batches[1:]
    groups = [
        [("step", kind, batch, False) for batch in largest for kind in everything],
        [("step", "sparse", batch, True) for batch in compiled_batches],
        [("step", "dense", batch, True) for batch in compiled_batches],
        [("step", kind, batch, False) for batch in others for kind in everything],
        [("encoder", kind, batch, False) for batch in batches for kind in everything],
        [("step", "timm", batch, True) for batch in compiled_batches],
        [("encoder", kind, batch, True) for batch in compiled_batches for kind in everything],
    ]
    return [Result(b, scope, kind, batch, compiled) for group in groups for scope, kind, batch, compiled in group
            for b in backbones]  # fmt: skip


def cell(kinds: dict[str, Result], kind: str, attribute: str) -> str:
    return f"{getattr(kinds[kind], attribute):.0f}" if kind in kinds else "–"


def speedup(kinds: dict[str, Result], kind: str) -> str:
    if "sparse" not in kinds or kind not in kinds:
        return "–"
    return f"{kinds['sparse'].images_per_s / kinds[kind].images_per_s:.2f}x"


def markdown(results: list[Result]) -> str:
    """One row per backbone, scope, batch and mode: images/s of each kind, sparse speed-ups, peak memory."""
    rows: dict[tuple, dict[str, Result]] = {}
    for r in results:
        if not r.error and r.ms:
            rows.setdefault((r.backbone, r.scope, r.batch, r.compiled), {})[r.kind] = r
    lines = [
        "| backbone | scope | batch | mode | sparse img/s | dense img/s | timm img/s | sparse/dense | sparse/timm "
        "| peak MiB sparse | dense | timm | compile s (sparse) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (backbone, scope, batch, compiled), kinds in rows.items():
        mode = "compiled" if compiled else "eager"
        compile_s = cell(kinds, "sparse", "compile_s") if compiled else "–"
        lines.append(
            f"| {backbone} | {scope} | {batch} | {mode} | {cell(kinds, 'sparse', 'images_per_s')} "
            f"| {cell(kinds, 'dense', 'images_per_s')} | {cell(kinds, 'timm', 'images_per_s')} "
            f"| {speedup(kinds, 'dense')} | {speedup(kinds, 'timm')} | {cell(kinds, 'sparse', 'peak_mib')} "
            f"| {cell(kinds, 'dense', 'peak_mib')} | {cell(kinds, 'timm', 'peak_mib')} | {compile_s} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="resnet50,convnext_tiny,swin_tiny_patch4_window7_224,"
                        "vit_small_patch16_224")  # fmt: skip
    parser.add_argument("--batches", default="32,128")
    parser.add_argument("--compiled-batches", default="128")
    parser.add_argument("--input", type=int, default=224)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--deadline", type=float, default=420.0, help="seconds after which no new run starts")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", help="write the results here after every run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch._logging.set_logs(perf_hints=True)  # says when CUDA graphs are skipped, and why
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    started, results = time.perf_counter(), []
    for run in plan_runs(args):
        if time.perf_counter() - started > args.deadline:
            print(f"deadline reached: skipped {run.backbone} {run.scope} {run.kind} batch {run.batch} "
                  f"{'compiled' if run.compiled else 'eager'}", flush=True)  # fmt: skip
            continue
        try:
            measure(args, run)
        except Exception as error:  # noqa: BLE001 - one failed run must not cost the others on a lent GPU
            run.error = f"{type(error).__name__}: {error}"
            traceback.print_exc()
            if args.device == "cuda":
                torch.cuda.empty_cache()
        results.append(run)
        mode = "compiled" if run.compiled else "eager"
        print(f"{run.backbone} {run.scope} {run.kind} b{run.batch} {mode}: {run.ms:.1f} ms, "
              f"{run.images_per_s:.0f} img/s, peak {run.peak_mib:.0f} MiB, compile {run.compile_s:.0f} s"
              f"{' ERROR ' + run.error if run.error else ''}", flush=True)  # fmt: skip
        if args.json:
            with open(args.json, "w") as file:
                json.dump({"args": vars(args), "device": device_name, "torch": torch.__version__,
                           "results": [asdict(r) for r in results]}, file, indent=1)  # fmt: skip
    print(f"\n{args.input} px, mask ratio {args.mask_ratio}, bf16 autocast, {device_name}, torch {torch.__version__}")
    print(markdown(results))


if __name__ == "__main__":
    main()
