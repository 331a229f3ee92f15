"""The finished steps of a comparison, gathered into per-variant figures (mean ± std over seeds)."""

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from experiments.plan import Variant
from experiments.runs import evaluation_path, pretraining_path, read_json

PROTOCOL_NAMES = {"knn": "kNN", "linear": "linear probe", "finetune": "fine-tune"}
TRAINING_FLOPS_PER_FORWARD = 3  # forward + backward ≈ 3 forward passes (backward ≈ 2×)


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of a few seeds' values."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def text(self, scale: float = 100.0, digits: int = 1) -> str:
        if not self.values:
            return "–"
        if len(self.values) == 1:  # one seed has no spread: a ± 0 would claim one
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}"


@dataclass
class VariantResults:
    """Everything measured for one variant, per seed: its loss curves, training seconds at each logged iteration,
    accuracy per protocol and fine-tuning curves."""

    variant: Variant
    losses: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    accuracy: dict[str, dict[int, float]] = field(default_factory=dict)
    seconds: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    finetune_curves: dict[int, list[dict]] = field(default_factory=dict)

    def spread(self, protocol: str) -> Spread:
        return Spread(tuple(self.accuracy.get(protocol, {}).values()))

    def final_loss(self) -> Spread:
        return Spread(tuple(curve[-1][1] for curve in self.losses.values() if curve))

    def training_minutes(self) -> Spread:
        """Training time of each finished run (the iterations' own time, without start-up), in minutes."""
        return Spread(tuple(curve[-1][1] / 60 for curve in self.seconds.values() if curve))


def gather_variant(run: Path, variant: Variant, seeds: list[int]) -> VariantResults:
    """Read the pretraining and evaluation results of one variant that exist so far."""
    results = VariantResults(variant)
    for seed in seeds:
        pretrain = pretraining_path(run, variant.pretraining, seed)
        if pretrain.exists():
            recorded = read_json(pretrain)
            results.losses[seed] = [tuple(point) for point in recorded["losses"]]
            results.seconds[seed] = [tuple(point) for point in recorded.get("seconds", [])]
        add_accuracy(results.accuracy, evaluation_path(run, variant.pretraining.name, seed), seed)
    results.finetune_curves = gather_curves(run, variant.pretraining.name, seeds)
    return results


def gather_curves(run: Path, tag: str, seeds: list[int]) -> dict[int, list[dict]]:
    """The per-epoch fine-tuning curves of an evaluated encoder, per seed, where they exist."""
    paths = {seed: evaluation_path(run, tag, seed).parent / "finetune" / "curve.json" for seed in seeds}
    return {seed: read_json(path) for seed, path in paths.items() if path.exists()}


def gather_random_init(run: Path, backbone: str, input_size: int, seeds: list[int]) -> dict[str, dict[int, float]]:
    """Accuracy per protocol and seed of randomly initialised `backbone` (the baseline pretraining must beat)."""
    accuracy: dict[str, dict[int, float]] = {}
    for seed in seeds:
        add_accuracy(accuracy, evaluation_path(run, random_init_tag(backbone, input_size), seed), seed)
    return accuracy


def add_accuracy(accuracy: dict[str, dict[int, float]], path: Path, seed: int) -> None:
    if path.exists():
        for protocol, value in read_json(path).items():
            accuracy.setdefault(protocol, {})[seed] = float(value)


def random_init_tag(backbone: str, input_size: int) -> str:
    return f"random-{backbone}-{input_size}px"


def pretraining_compute(measurement: dict, images_seen: int) -> float:
    """Total pretraining FLOPs of a run: per-image forward (encoder + decoder) × 3 × images seen."""
    forward = measurement["encoder_flops"] + measurement["decoder_flops"]
    return forward * TRAINING_FLOPS_PER_FORWARD * images_seen
