"""`report.md` of a comparison or an ablation: tables of cost and accuracy, plots, and claims checked."""

import statistics
from collections.abc import Iterable
from pathlib import Path

from experiments import plots
from experiments.claims import CLAIMS, FINETUNE_GAIN_GOAL, FINETUNE_SANITY, verdict
from experiments.recipes import COLUMNS, RecipeSummary
from experiments.results import (
    PROTOCOL_NAMES,
    TRAINING_FLOPS_PER_FORWARD,
    Spread,
    VariantResults,
    pretraining_compute,
)


def header(title: str, command: str, machine: str, timing: str, settings: list[str]) -> list[str]:
    return [
        f"# {title}",
        "",
        "Produced by one command (rerun, in any session, it runs only the chains its ledger lacks):",
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


def gain_text(pretrained: Spread, random: Spread) -> str:
    """Gain in points and whether it exceeds the seeds' combined spread (the report's noise rule)."""
    difference = difference_text(pretrained, random)
    if difference == "–":
        return difference
    judged = verdict(pretrained, random) if pretrained.mean >= random.mean else verdict(random, pretrained)
    if judged == "reproduced":
        return f"{difference} (beyond noise)"
    if "one seed only" in judged:
        return f"{difference} (one seed)"
    return f"{difference} (within noise)"


def recipe_table(recipes: dict[str, RecipeSummary]) -> list[str]:
    """Each backbone's pretraining recipe, as its generated config set it."""
    lines = ["| backbone | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    lines += [f"| {name} | " + " | ".join(summary.row()) + " |" for name, summary in recipes.items()]
    return lines


def budget_table(results: list[VariantResults]) -> list[str]:
    """Iterations, images seen, measured training minutes and final loss of each variant's pretraining runs."""
    lines = [
        "| variant | iterations | images seen | training minutes per run | final pretraining loss |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        setting = result.variant.pretraining
        lines.append(
            f"| {result.variant.label} | {setting.iters} | {setting.images_seen} | "
            f"{result.training_minutes().text(1.0, 1)} | {result.final_loss().text(1.0, 3)} |"
        )
    return lines


def convergence(curves: dict[int, list[dict]]) -> tuple[Spread, Spread]:
    """Final fine-tuning training loss per seed, and its relative change over the last quarter of the epochs (a
    flattened loss changes little there)."""
    finals, changes = [], []
    for curve in curves.values():
        if len(curve) < 2:
            continue
        quarter = curve[max(0, round(0.75 * len(curve)) - 1)]["loss"]
        finals.append(curve[-1]["loss"])
        changes.append((curve[-1]["loss"] - quarter) / quarter)
    return Spread(tuple(finals)), Spread(tuple(changes))


def convergence_table(rows: list[tuple[str, str, dict[int, list[dict]]]]) -> list[str]:
    lines = [
        "| backbone | init | epochs | final training loss | change over the last quarter of the epochs |",
        "|---|---|---|---|---|",
    ]
    for name, start, curves in rows:
        if not curves:
            continue
        final, change = convergence(curves)
        epochs = max(len(curve) for curve in curves.values())
        lines.append(f"| {name} | {start} | {epochs} | {final.text(1.0, 3)} | {change.text(100.0, 1)} % |")
    return lines


def goal_lines(
    results: list[VariantResults], random_init: dict[str, dict[str, dict[int, float]]], protocols: list[str]
) -> list[str]:
    """The comparison's goals checked against its numbers, family by family (the noise rule as in the tables)."""
    lines = []
    if "finetune" in protocols:
        for result in results:
            name = result.variant.pretraining.backbone
            random = Spread(tuple(random_init.get(name, {}).get("finetune", {}).values()))
            pretrained = result.spread("finetune")
            if not random.values or not pretrained.values:
                continue
            sane = "meets" if random.mean >= FINETUNE_SANITY else "misses"
            gain = 100 * (pretrained.mean - random.mean)
            beyond = verdict(pretrained, random) == "reproduced"
            met = "met" if gain >= FINETUNE_GAIN_GOAL and beyond else "not met"
            noise = gain_text(pretrained, random).split("(")[-1].rstrip(")")
            lines.append(
                f"- **{name}**: random-init fine-tuning {100 * random.mean:.1f} % ({sane} the "
                f"{100 * FINETUNE_SANITY:.0f} % sanity bar); fine-tuning gain {gain:+.1f} points ({noise}): goal of "
                f"≥ +{FINETUNE_GAIN_GOAL:.0f} beyond noise {met}."
            )
    if "linear" in protocols:
        wins = []
        for result in results:
            name = result.variant.pretraining.backbone
            random = Spread(tuple(random_init.get(name, {}).get("linear", {}).values()))
            if (
                result.spread("linear").values
                and random.values
                and verdict(result.spread("linear"), random) == "reproduced"
            ):
                wins.append(name)
        lines.append(
            f"- Linear probe beyond noise above random init for {len(wins)} of {len(results)} backbones"
            f" ({', '.join(wins) or 'none'}); the goal asks for at least three."
        )
    return lines


def comparison_report(
    results: list[VariantResults],
    random_init: dict[str, dict[str, dict[int, float]]],
    measurements: dict[tuple[str, bool], dict],
    protocols: list[str],
    folder: Path,
    preamble: list[str],
    recipes: dict[str, RecipeSummary] | None = None,
    random_curves: dict[str, dict[int, list[dict]]] | None = None,
) -> str:
    """Markdown for a backbone comparison; writes its plots under `folder`."""
    backbones = [r.variant.pretraining.backbone for r in results]
    lines = list(preamble)
    if recipes:
        lines += ["## Pretraining recipes (read from each run's generated config)", "", *recipe_table(recipes), ""]
    lines += ["## Pretraining budget (measured)", "", *budget_table(results), ""]
    lines += ["## Cost of one masked-pretraining step", ""]
    lines += cost_table(backbones, measurements)
    lines += ["", "FLOPs are per image, forward only, fvcore's convention (one multiply-add = one FLOP).", ""]
    lines += ["## Accuracy on Fashion-MNIST (top-1 %, mean ± std over seeds)", ""]
    lines += [f"| backbone | init | {accuracy_columns(protocols)} |"]
    lines += ["|---|---|" + "---|" * len(protocols)]
    bars = []
    for result in results:
        name = result.variant.pretraining.backbone
        random = {p: Spread(tuple(random_init.get(name, {}).get(p, {}).values())) for p in protocols}
        pretrained = {p: result.spread(p) for p in protocols}
        lines.append(f"| {name} | random | " + " | ".join(random[p].text() for p in protocols) + " |")
        lines.append(f"| {name} | hiermae | " + " | ".join(pretrained[p].text() for p in protocols) + " |")
        lines.append(f"| {name} | gain | " + " | ".join(gain_text(pretrained[p], random[p]) for p in protocols) + " |")
        bars += [(f"{name} random", random), (f"{name} hiermae", pretrained)]
    lines += [
        "",
        "A gain is beyond noise when it exceeds the two inits' seed standard deviations combined (√(σ₁² + σ₂²)).",
        "",
    ]
    goals = goal_lines(results, random_init, protocols)
    if goals:
        lines += ["## Goals checked", "", *goals, ""]
    curves = random_curves or {}
    rows = []
    for result in results:
        name = result.variant.pretraining.backbone
        rows += [(name, "random", curves.get(name, {})), (name, "hiermae", result.finetune_curves)]
    names = ["loss_curves", "loss_vs_time"]
    if any(c for _, _, c in rows):
        lines += ["## Fine-tuning convergence", "", *convergence_table(rows), ""]
        panels = {name: [(start, c) for n, start, c in rows if n == name] for name in backbones}
        plots.finetune_curves(panels, folder / "finetune_curves.png")
        names.append("finetune_curves")
    plots.loss_curves(results, folder / "loss_curves.png")
    plots.loss_vs_time(results, folder / "loss_vs_time.png")
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
        accuracy_points, f"pretraining compute (TFLOPs, ≈{TRAINING_FLOPS_PER_FORWARD} × forward × images seen)",
        f"{PROTOCOL_NAMES[headline]} top-1 (%)", "Accuracy vs pretraining compute", folder / "accuracy_vs_flops.png",
    )  # fmt: skip
    plots.scatter(
        throughput_points, "pretraining GFLOPs per image (forward)", "images / s (forward + backward)",
        "Throughput vs FLOPs", folder / "throughput_vs_flops.png",
    )  # fmt: skip
    names += ["accuracy", "accuracy_vs_flops", "throughput_vs_flops"]
    lines += ["", *image_links(folder, names)]
    return "\n".join(lines) + "\n"


def budget_curve_section(
    backbone: str,
    points: list[tuple[float, VariantResults]],
    random_init: dict[str, dict[int, float]],
    folder: Path,
) -> str:
    """Markdown and plot of the gain over random init against pretraining minutes, per protocol, for one backbone
    (`points`: each budget in minutes with its results, shortest first)."""
    protocols = [p for p in ("knn", "linear", "finetune") if any(r.spread(p).values for _, r in points)]
    random = {p: Spread(tuple(random_init.get(p, {}).values())) for p in protocols}
    lines = ["", f"## Pretraining budget curve: {backbone}", "",
             "Gain over random init of the same backbone (points, mean over seeds) against the minutes of "
             "pretraining per run.", "",
             f"| minutes | iterations | {accuracy_columns(protocols)} |",
             "|---|---|" + "---|" * len(protocols)]  # fmt: skip
    series: dict[str, list[tuple[float, Spread]]] = {p: [] for p in protocols}
    for minutes, result in points:
        cells = " | ".join(gain_text(result.spread(p), random[p]) for p in protocols)
        lines.append(f"| {minutes:g} | {result.variant.pretraining.iters} | {cells} |")
        for p in protocols:
            if result.spread(p).values and random[p].values:
                series[p].append((minutes, Spread(tuple(v - random[p].mean for v in result.spread(p).values))))
    plots.gain_curve(series, backbone, folder / "budget_curve.png")
    lines += ["", *image_links(folder, ["budget_curve"]), ""]
    return "\n".join(lines) + "\n"


def family_selection_metric(rows: list[VariantResults], metric: str) -> tuple[str, list[str]]:
    """The metric that ranks one family's sweep variants, and why it is not `metric`: fine-tuning that ends below
    the linear probe of the same weights fails the protocol's sanity rule (a probe is fine-tuning with the backbone
    frozen), so such a family is ranked by its linear probe."""
    if metric != "finetune":
        return metric, []
    both = [r for r in rows if r.spread("finetune").values and r.spread("linear").values]
    below = [r for r in both if r.spread("finetune").mean < r.spread("linear").mean]
    if not below:
        return metric, []
    return "linear", [
        f"Fine-tuning ended below the linear probe of the same weights for {len(below)} of {len(rows)} variants, "
        "which fails the protocol's sanity rule, so this family is ranked by its linear probe.",
        "",
    ]


def sweep_report(
    results: list[VariantResults],
    protocols: list[str],
    defaults: dict[str, str | None],
    split: str,
    folder: Path,
    preamble: list[str],
) -> str:
    """Markdown for a per-family sweep: every variant's seeds, and the best variant against the recipe's default.

    `defaults` maps each backbone to the label of the variant that matches its recipe as committed. The selection
    metric is fine-tuning top-1 when measured (the linear probe's for a family whose fine-tuning ends below its
    probe: `family_selection_metric`), else the first protocol's, scored on `split`."""
    metric = "finetune" if "finetune" in protocols else protocols[0]
    lines = [*preamble, f"Selection metric: {PROTOCOL_NAMES[metric]} top-1 on the {split}.", ""]
    for backbone in dict.fromkeys(r.variant.group for r in results):
        rows = [r for r in results if r.variant.group == backbone]
        lines += [f"## {backbone}", ""]
        lines += [f"| variant | iterations | final pretraining loss | {accuracy_columns(protocols)} |"]
        lines += ["|---|---|---|" + "---|" * len(protocols)]
        for result in rows:
            cells = " | ".join(seed_values(result, p) for p in protocols)
            marker = " (recipe)" if result.variant.label == defaults.get(backbone) else ""
            lines.append(
                f"| {result.variant.label}{marker} | {result.variant.pretraining.iters} | "
                f"{result.final_loss().text(1.0, 3)} | {cells} |"
            )
        judged_by, caveat = family_selection_metric(rows, metric)
        measured = [r for r in rows if r.spread(judged_by).values]
        default = next((r for r in rows if r.variant.label == defaults.get(backbone)), None)
        if measured and default is not None and default.spread(judged_by).values:
            best = max(measured, key=lambda r: r.spread(judged_by).mean)
            choice = "the recipe's default leads"
            if best is not default:
                judged = verdict(best.spread(judged_by), default.spread(judged_by))
                noise = "beyond noise" if judged == "reproduced" else "within noise"
                if min(len(best.spread(judged_by).values), len(default.spread(judged_by).values)) < 2:
                    noise = "one seed: no spread to judge"
                lead = 100 * (best.spread(judged_by).mean - default.spread(judged_by).mean)
                choice = f"**{best.variant.label}** leads the recipe's default by {lead:+.1f} points ({noise})"
            lines += ["", *caveat, f"Best by {PROTOCOL_NAMES[judged_by]}: {choice}.", ""]
        lines.append("")
    plots.loss_curves(results, folder / "sweep_loss_curves.png")
    lines += image_links(folder, ["sweep_loss_curves"])
    return "\n".join(lines) + "\n"


def seed_values(result: VariantResults, protocol: str) -> str:
    """Each seed's top-1 and their mean ± std, e.g. '71.2, 72.0 (71.6 ± 0.6)'."""
    values = result.accuracy.get(protocol, {})
    if not values:
        return "–"
    each = ", ".join(f"{100 * values[seed]:.1f}" for seed in sorted(values))
    return each if len(values) == 1 else f"{each} ({result.spread(protocol).text()})"


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
