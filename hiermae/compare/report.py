"""`report.md` of a comparison or an ablation: tables of cost and accuracy, plots, and claims checked."""

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hiermae.compare import plots
from hiermae.compare.results import PROTOCOL_NAMES, Spread, VariantResults, pretraining_compute


@dataclass(frozen=True)
class Claim:
    """A published direction an ablation can test: variant `better` should beat variant `worse`."""

    axis: str
    text: str
    source: str
    better: str
    worse: str


CLAIMS = (
    Claim("mask_ratio", "a high mask ratio (0.75) beats a low one (0.4)", "MAE, He et al. 2022, Fig. 5",
          "mask_ratio=0.75", "mask_ratio=0.4"),
    Claim("mask_ratio", "a mask ratio of 0.6 (SparK's choice) beats 0.4", "SparK, Tian et al. 2023",
          "mask_ratio=0.6", "mask_ratio=0.4"),
    Claim("target", "normalized pixels beat raw pixels", "MAE, He et al. 2022, Table 1d",
          "target=norm_pixels", "target=pixels"),
    Claim("target", "HOG is at least as good a target as raw pixels", "MaskFeat, Wei et al. 2022, target study",
          "target=hog", "target=pixels"),
    Claim("sparse", "sparse pretraining of a CNN beats the dense masked reference",
          "SparK, Tian et al. 2023, ablations", "sparse=True", "sparse=False"),
    Claim("decoder", "a hierarchical (UNet) decoder beats a single-scale linear head for a CNN",
          "SparK, Tian et al. 2023, ablations", "decoder=unet", "decoder=linear"),
)  # fmt: skip


def verdict(better: Spread, worse: Spread) -> str:
    """'reproduced' when the claimed winner leads by more than the seeds' combined spread, else why not.

    With fewer than two seeds on a side there is no spread to weigh the difference against: only the direction
    is reported.
    """
    if not better.values or not worse.values:
        return "not measured"
    difference = better.mean - worse.mean
    if min(len(better.values), len(worse.values)) < 2:
        direction = "same direction" if difference > 0 else "opposite direction" if difference < 0 else "tie"
        return f"{direction}, one seed only (no spread to judge)"
    noise = math.hypot(better.std, worse.std)
    if difference > noise:
        return "reproduced"
    if difference > 0:
        return "same direction, within seed noise"
    if difference == 0:
        return "not reproduced (tie)"
    if -difference > noise:
        return "not reproduced (opposite, beyond seed noise)"
    return "not reproduced (opposite direction, within seed noise)"


def header(title: str, command: str, machine: str, timing: str, settings: list[str]) -> list[str]:
    return [
        f"# {title}",
        "",
        "Produced by one command (it resumes a partly finished run when given the same `--out`):",
        "",
        f"    {command}",
        "",
        f"Machine: {machine}. {timing}",
        "",
        *[f"- {line}" for line in settings],
        "",
    ]


def accuracy_columns(protocols: list[str]) -> str:
    return " | ".join(PROTOCOL_NAMES[p] for p in protocols)


def cost_table(backbones: list[str], measurements: dict[tuple[str, bool], dict]) -> list[str]:
    """Parameters, FLOPs per image (forward), throughput and peak memory of hiermae and the dense reference."""
    lines = [
        "| backbone | encoder params (M) | dense inference GFLOPs | hiermae pretraining GFLOPs (enc + dec) "
        "| encoder ÷ dense | dense-reference pretraining GFLOPs | hiermae img/s | dense-ref img/s | speed-up "
        "| speed-up in CPU time | hiermae peak MiB | dense-ref peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in backbones:
        sparse, dense = measurements.get((name, True)), measurements.get((name, False))
        if sparse is None or dense is None:
            lines.append(f"| {name} | not measured |")
            continue
        lines.append(
            f"| {name} | {sparse['encoder_parameters'] / 1e6:.1f} | {sparse['dense_inference_flops'] / 1e9:.2f} "
            f"| {sparse['encoder_flops'] / 1e9:.2f} + {sparse['decoder_flops'] / 1e9:.2f} "
            f"| {sparse['encoder_flops'] / sparse['dense_inference_flops']:.2f} "
            f"| {(dense['encoder_flops'] + dense['decoder_flops']) / 1e9:.2f} "
            f"| {sparse['images_per_second']:.1f} | {dense['images_per_second']:.1f} "
            f"| {sparse['images_per_second'] / dense['images_per_second']:.2f}× "
            f"| {cpu_speed_up(sparse, dense)} | {sparse['peak_mib']:.0f} | {dense['peak_mib']:.0f} |"
        )
    loads = [m["load_average"] for m in measurements.values() if "load_average" in m]
    if loads:
        lines += ["", f"Load average while measuring: {min(loads):.1f}–{max(loads):.1f} on this machine's cores."]
    spread = step_spread(measurements.values())
    if spread is not None:
        lines += [
            "",
            f"Throughput is the median of {spread[0]} timed steps; within one measurement a step was up to "
            f"{spread[1]:.0%} away from its median, so read the speed-ups as ± that much.",
        ]
    return lines


def step_spread(measurements: Iterable[dict]) -> tuple[int, float] | None:
    """Fewest timed steps in a measurement, and the largest relative distance of one step from its median."""
    timed = [m["step_seconds"] for m in measurements if m.get("step_seconds")]
    if not timed:
        return None
    return min(len(steps) for steps in timed), max(relative_spread(steps) for steps in timed)


def relative_spread(steps: list[float]) -> float:
    """The largest distance of one step's time from the median, as a fraction of the median."""
    median = statistics.median(steps)
    return max(abs(t - median) for t in steps) / median


def cpu_speed_up(sparse: dict, dense: dict) -> str:
    """Speed-up in process CPU time (steadier than wall time when other jobs share the cores)."""
    if "images_per_cpu_second" not in sparse or "images_per_cpu_second" not in dense:
        return "–"
    return f"{sparse['images_per_cpu_second'] / dense['images_per_cpu_second']:.2f}×"


def comparison_report(
    results: list[VariantResults],
    random_init: dict[str, dict[str, dict[int, float]]],
    measurements: dict[tuple[str, bool], dict],
    protocols: list[str],
    folder: Path,
    preamble: list[str],
) -> str:
    """Markdown for a backbone comparison; writes its plots under `folder`."""
    backbones = [r.variant.pretraining.backbone for r in results]
    lines = [*preamble, "## Cost of one masked-pretraining step", ""]
    lines += cost_table(backbones, measurements)
    lines += ["", "FLOPs are per image, forward only, fvcore's convention (one multiply-add = one FLOP).", ""]
    lines += ["## Accuracy on Fashion-MNIST (top-1 %, mean ± std over seeds)", ""]
    lines += [f"| backbone | init | {accuracy_columns(protocols)} | final pretraining loss |"]
    lines += ["|---|---|" + "---|" * len(protocols) + "---|"]
    bars = []
    for result in results:
        name = result.variant.pretraining.backbone
        random = {p: Spread(tuple(random_init.get(name, {}).get(p, {}).values())) for p in protocols}
        pretrained = {p: result.spread(p) for p in protocols}
        gain = " | ".join(difference_text(pretrained[p], random[p]) for p in protocols)
        lines.append(f"| {name} | random | " + " | ".join(random[p].text() for p in protocols) + " | |")
        lines.append(
            f"| {name} | hiermae | " + " | ".join(pretrained[p].text() for p in protocols)
            + f" | {result.final_loss().text(1.0, 3)} |"
        )  # fmt: skip
        lines.append(f"| {name} | gain | {gain} | |")
        bars += [(f"{name} random", random), (f"{name} hiermae", pretrained)]
    plots.loss_curves(results, folder / "loss_curves.png")
    plots.accuracy_bars(bars, protocols, folder / "accuracy.png")
    headline = "linear" if "linear" in protocols else protocols[0]
    accuracy_points, throughput_points = [], []
    for result in results:
        name = result.variant.pretraining.backbone
        sparse, dense = measurements.get((name, True)), measurements.get((name, False))
        if sparse is None or dense is None:
            continue
        compute = pretraining_compute(sparse, result.variant.pretraining.images_seen)
        accuracy_points.append((name, compute / 1e12, result.spread(headline)))
        for label, figures in (("hiermae", sparse), ("dense ref", dense)):
            per_image = (figures["encoder_flops"] + figures["decoder_flops"]) / 1e9
            throughput_points.append((f"{name} {label}", per_image, figures["images_per_second"]))
    plots.scatter(
        accuracy_points, "pretraining compute (TFLOPs, ≈3 × forward × images seen)",
        f"{PROTOCOL_NAMES[headline]} top-1 (%)", "Accuracy vs pretraining compute", folder / "accuracy_vs_flops.png",
    )  # fmt: skip
    plots.scatter(
        throughput_points, "pretraining GFLOPs per image (forward)", "images / s (forward + backward)",
        "Throughput vs FLOPs", folder / "throughput_vs_flops.png",
    )  # fmt: skip
    lines += ["", *image_links(folder, ["loss_curves", "accuracy", "accuracy_vs_flops", "throughput_vs_flops"])]
    return "\n".join(lines) + "\n"


def ablation_report(
    results: list[VariantResults],
    random_init: dict[str, dict[int, float]],
    protocols: list[str],
    axes: list[str],
    folder: Path,
    preamble: list[str],
) -> str:
    """Markdown for ablations on one backbone: a table per axis and the published claims checked."""
    by_label = {r.variant.label: r for r in results}
    baseline = by_label["baseline"]
    baseline_setting = baseline.variant.pretraining
    random = {p: Spread(tuple(random_init.get(p, {}).values())) for p in protocols}
    lines = [*preamble, f"| variant | final pretraining loss | {accuracy_columns(protocols)} |"]
    lines += ["|---|---|" + "---|" * len(protocols)]
    lines.append("| random init | | " + " | ".join(random[p].text() for p in protocols) + " |")
    for axis in axes:
        lines.append(f"| **{axis}** | | " + " | " * (len(protocols) - 1) + " |")
        for result in results:
            if result.variant.group not in (axis, "baseline"):
                continue
            label = result.variant.label
            if result is baseline:
                label = f"{axis}={getattr(baseline_setting, axis)} (baseline)"
                by_label.setdefault(f"{axis}={getattr(baseline_setting, axis)}", baseline)
            cells = " | ".join(result.spread(p).text() for p in protocols)
            lines.append(f"| {label} | {result.final_loss().text(1.0, 3)} | {cells} |")
    headline = "linear" if "linear" in protocols else protocols[0]
    lines += ["", f"## Published claims checked ({PROTOCOL_NAMES[headline]} top-1, mean ± std over seeds)", ""]
    lines += ["| claim | source | claimed better | claimed worse | verdict |", "|---|---|---|---|---|"]
    for claim in CLAIMS:
        if claim.axis not in axes:
            continue
        better, worse = by_label.get(claim.better), by_label.get(claim.worse)
        if better is None or worse is None:
            continue
        b, w = better.spread(headline), worse.spread(headline)
        lines.append(f"| {claim.text} | {claim.source} | {b.text()} | {w.text()} | {verdict(b, w)} |")
    lines += [
        "",
        "A claim counts as reproduced when the claimed winner leads by more than the two variants' seed standard "
        "deviations combined (√(σ₁² + σ₂²)).",
        "",
    ]
    plots.loss_curves(results, folder / "ablation_loss_curves.png")
    lines += image_links(folder, ["ablation_loss_curves"])
    return "\n".join(lines) + "\n"


def difference_text(a: Spread, b: Spread) -> str:
    """Difference of two means in points, or a dash while either is unmeasured."""
    if not a.values or not b.values:
        return "–"
    return f"{100 * (a.mean - b.mean):+.1f}"


def image_links(folder: Path, names: list[str]) -> list[str]:
    return [f"![{name}]({folder.name}/{name}.png)" for name in names]
