"""The comparison's PNG plots (matplotlib, no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from experiments.results import PROTOCOL_NAMES, Spread, VariantResults  # noqa: E402


def loss_curves(results: list[VariantResults], path: Path) -> None:
    """Mean pretraining loss over seeds against images seen, one line per variant, min–max band."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in results:
        curves = [dict(curve) for curve in result.losses.values() if curve]
        if not curves:
            continue
        iters = sorted(set.intersection(*(set(curve) for curve in curves)))
        images = [i * result.variant.pretraining.batch_size for i in iters]
        values = [[curve[i] for curve in curves] for i in iters]
        axes.plot(images, [sum(v) / len(v) for v in values], label=result.variant.label)
        axes.fill_between(images, [min(v) for v in values], [max(v) for v in values], alpha=0.2)
    axes.set(xlabel="images seen", ylabel="pretraining loss (masked units)", title="Pretraining loss, mean of seeds")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    save(figure, path)


def loss_vs_time(results: list[VariantResults], path: Path) -> None:
    """Mean pretraining loss over seeds against training minutes (the runs' own time), one line per variant."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in results:
        curves = [
            (dict(result.losses[seed]), dict(result.seconds[seed])) for seed in result.seconds if seed in result.losses
        ]
        curves = [(losses, seconds) for losses, seconds in curves if losses and seconds]
        if not curves:
            continue
        iters = sorted(set.intersection(*(set(losses) & set(seconds) for losses, seconds in curves)))
        minutes = [sum(seconds[i] for _, seconds in curves) / len(curves) / 60 for i in iters]
        axes.plot(minutes, [sum(losses[i] for losses, _ in curves) / len(curves) for i in iters],
                  label=result.variant.label)  # fmt: skip
    axes.set(xlabel="training minutes", ylabel="pretraining loss (masked units)",
             title="Pretraining loss against time, mean of seeds")  # fmt: skip
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    save(figure, path)


def finetune_curves(panels: dict[str, list[tuple[str, dict[int, list[dict]]]]], path: Path) -> None:
    """One panel per backbone: the fine-tuning training loss per epoch, mean of seeds with a min–max band, for each
    start (pretrained, random init); a flat end shows the schedule ran to convergence."""
    columns = min(2, max(1, len(panels)))
    rows = max(1, -(-len(panels) // columns))
    figure, grid = plt.subplots(rows, columns, figsize=(6 * columns, 3.6 * rows), squeeze=False)
    for axes, (title, starts) in zip(grid.flat, panels.items()):
        for label, curves in starts:
            runs = [[point["loss"] for point in curve] for curve in curves.values() if curve]
            if not runs:
                continue
            epochs = range(1, min(len(run) for run in runs) + 1)
            values = [[run[e - 1] for run in runs] for e in epochs]
            axes.plot(list(epochs), [sum(v) / len(v) for v in values], label=label)
            axes.fill_between(list(epochs), [min(v) for v in values], [max(v) for v in values], alpha=0.2)
        axes.set(title=title, xlabel="epoch", ylabel="training loss")
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    for axes in list(grid.flat)[len(panels) :]:
        axes.set_visible(False)
    save(figure, path)


def gain_curve(series: dict[str, list[tuple[float, Spread]]], backbone: str, path: Path) -> None:
    """Gain over random init (points) against pretraining minutes, one line per protocol, error bars one std."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for protocol, points in series.items():
        if points:
            minutes, gains = [m for m, _ in points], [100 * s.mean for _, s in points]
            errors = [100 * s.std for _, s in points]
            axes.errorbar(minutes, gains, yerr=errors, marker="o", capsize=3, label=PROTOCOL_NAMES[protocol])
    axes.axhline(0.0, color="grey", linewidth=0.8)
    axes.set(xlabel="pretraining minutes per run", ylabel="gain over random init (points)",
             title=f"{backbone}: gain against pretraining budget")  # fmt: skip
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    save(figure, path)


def accuracy_bars(rows: list[tuple[str, dict[str, Spread]]], protocols: list[str], path: Path) -> None:
    """Grouped bars: for each protocol, one bar per row (e.g. backbone × init), error bars one std."""
    figure, axes = plt.subplots(figsize=(max(7, 1.2 * len(rows) * len(protocols) / 2), 4.5))
    width = 0.8 / max(1, len(rows))
    for index, (label, spreads) in enumerate(rows):
        positions = [p + index * width for p in range(len(protocols))]
        means = [100 * spreads[p].mean for p in protocols]
        errors = [100 * spreads[p].std for p in protocols]
        axes.bar(positions, means, width, yerr=errors, capsize=3, label=label)
    axes.set_xticks([p + 0.4 - width / 2 for p in range(len(protocols))], [PROTOCOL_NAMES[p] for p in protocols])
    axes.set(ylabel="Fashion-MNIST top-1 (%)", title="Accuracy, mean ± std over seeds")
    axes.legend(fontsize=7, ncol=2)
    save(figure, path)


def scatter(points: list[tuple[str, float, Spread | float]], xlabel: str, ylabel: str, title: str, path: Path) -> None:
    """Labelled points (x, y or y with a spread); log-scaled x because FLOPs span orders of magnitude."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for label, x, y in points:
        if isinstance(y, Spread):
            axes.errorbar([x], [100 * y.mean], yerr=[100 * y.std], fmt="o", capsize=3, label=label)
        else:
            axes.plot([x], [y], "o", label=label)
    axes.set_xscale("log")
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if points:
        axes.legend(fontsize=7)
    save(figure, path)


def save(figure: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
