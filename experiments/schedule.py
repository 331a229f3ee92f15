"""How long each chain of a comparison should take: the `--plan` table and the `--stop-after` deadline.

A chain's pretraining takes its iterations at the calibrated seconds per iteration, plus the start-up seen in the
ledger's chains (`STARTUP_SECONDS` before any). Its evaluation takes the median wall time of the ledger's
evaluations of the same backbone; before any has finished, a rough figure from the calibration: the images the
evaluation pushes through the network (fine-tuning passes forward and backward, probes forward only, a third of
the cost) at the calibrated masked-pretraining seconds per image. Both are measured with the comparison's jobs
sharing the cores, as the chains will run.
"""

import statistics
from dataclasses import dataclass
from pathlib import Path

from experiments.ledger import Chain
from experiments.plan import Pretraining
from experiments.runs import Evaluation, calibration_path, read_json

STARTUP_SECONDS = 20.0  # one step's process start, data and model building, before the ledger has observed any
VALIDATION_IMAGES = 2000  # the validation split's size (`LabelledFashionMNIST`)
TEST_IMAGES = 10000


@dataclass(frozen=True)
class Estimate:
    """Seconds a chain should take, per step, and where the evaluation's figure comes from."""

    pretrain: float
    evaluate: float
    source: str  # 'observed' (the ledger's evaluations of this backbone) or 'rough' (from the calibration)

    @property
    def seconds(self) -> float:
        return self.pretrain + self.evaluate


def seconds_per_iter(run: Path, setting: Pretraining) -> float | None:
    path = calibration_path(run, setting)
    return read_json(path)["seconds_per_iter"] if path.exists() else None


def evaluated_images(evaluation: Evaluation) -> tuple[int, int]:
    """(training images, scored images) of every protocol of `evaluation`."""
    train = evaluation.labelled or evaluation.train_limit or 60000
    if evaluation.evaluate_on == "validation":
        return train, VALIDATION_IMAGES
    return train, evaluation.test_limit or TEST_IMAGES


def rough_evaluation_seconds(evaluation: Evaluation, seconds_per_image: float) -> float:
    """An evaluation's seconds from the calibrated cost of one image's masked-pretraining step."""
    train, scored = evaluated_images(evaluation)
    passes = 0.0
    if "finetune" in evaluation.protocols:
        passes += evaluation.finetune.epochs * train + scored / 3
    if {"knn", "linear"} & set(evaluation.protocols):
        passes += (train + scored) / 3
    return STARTUP_SECONDS + passes * seconds_per_image


def estimate(
    chain: Chain, run: Path, evaluation: Evaluation, calibrated: dict[str, Pretraining], observed: list[dict]
) -> Estimate | None:
    """The estimate of `chain`, or None while its backbone has no calibration (`calibrated`: one calibrated setting
    per backbone; `observed`: the ledger's chain entries)."""
    reference = calibrated.get(chain.backbone)
    per_iter = None if reference is None else seconds_per_iter(run, reference)
    if per_iter is None:
        return None
    pretrain = 0.0
    if chain.pretraining is not None:
        setting = chain.pretraining
        own = seconds_per_iter(run, setting) or per_iter * setting.batch_size / reference.batch_size
        pretrain = setting.iters * own + startup(observed)
    seen = [e["wall_seconds"]["evaluate"] for e in observed
            if e["backbone"] == chain.backbone and e["wall_seconds"].get("evaluate")]  # fmt: skip
    if seen:
        return Estimate(pretrain, statistics.median(seen), "observed")
    return Estimate(pretrain, rough_evaluation_seconds(evaluation, per_iter / reference.batch_size), "rough")


def startup(observed: list[dict]) -> float:
    """Median seconds a pretraining step spent outside its training iterations, in the ledger's chains."""
    overheads = [
        e["wall_seconds"]["pretrain"] - e["pretraining_curves"]["seconds"][-1][1]
        for e in observed
        if e.get("pretraining_curves", {}).get("seconds") and e["wall_seconds"].get("pretrain")
    ]
    return statistics.median(overheads) if overheads else STARTUP_SECONDS


def plan_table(rows: list[tuple[Chain, Estimate | None, bool]], jobs: int) -> str:
    """The `--plan` text: every chain with its estimated minutes (or 'done' when the ledger has it) and the total."""
    lines = [f"{'chain':<72} {'seed':>4} {'pretrain':>9} {'evaluate':>9} {'total':>7}  estimate"]
    remaining, unknown = 0.0, 0
    for chain, guess, done in rows:
        name = chain.tag if len(chain.tag) <= 72 else chain.tag[:69] + "..."
        if done:
            lines.append(f"{name:<72} {chain.seed:>4} {'':>9} {'':>9} {'':>7}  done (in the ledger)")
        elif guess is None:
            unknown += 1
            lines.append(f"{name:<72} {chain.seed:>4} {'?':>9} {'?':>9} {'?':>7}  not calibrated")
        else:
            remaining += guess.seconds
            lines.append(
                f"{name:<72} {chain.seed:>4} {guess.pretrain / 60:>9.1f} {guess.evaluate / 60:>9.1f} "
                f"{guess.seconds / 60:>7.1f}  {guess.source}"
            )
    todo = sum(not done for _, _, done in rows)
    lines.append(
        f"total: {len(rows)} chains, {todo} to run: {remaining / 60:.0f} chain-minutes, about "
        f"{remaining / 60 / max(1, jobs):.0f} min of wall time at {jobs} jobs at a time"
        + (f" (+ {unknown} chains without an estimate)" if unknown else "")
    )
    return "\n".join(lines)
