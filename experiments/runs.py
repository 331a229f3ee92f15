"""The steps of a comparison, each a subprocess whose result is a JSON file in the run folder.

A step whose result file exists is skipped, so an interrupted comparison resumes where it stopped; a pretraining
run that was cut off resumes from its last checkpoint (`tools/train.py --resume`). Result files are written by
rename, so a kill never leaves a half-written one. Independent steps run `jobs` at a time, each with an equal
share of the CPU threads. Steps: cost measurement, calibration (seconds per pretraining iteration, for equal
wall-time budgets), pretraining, and evaluation (`experiments.transfer`: probes and fine-tuning).
"""

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from experiments.plan import LOG_INTERVAL, ROOT, Pretraining
from hiermae.downstream.finetune import FineTuneRecipe
from hiermae.utils import write_json

CALIBRATION_ITERS = 25  # a short run of the real config; its first logged window (warm-up) is left out


def read_json(path: Path) -> object:
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Step:
    """A command whose success is recorded in `result` (the command writes it, or `collect` builds it after)."""

    name: str
    command: list[str]
    result: Path
    log: Path
    collect: Callable[[], object] | None = None


class StepError(RuntimeError):
    """A step's command exited non-zero; the message names the step and its log."""


def run_step(step: Step, threads: int) -> float:
    """Run `step` unless its result exists; return the seconds it took (0 when skipped)."""
    if step.result.exists():
        return 0.0
    step.log.parent.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))  # an installed hiermae first
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=path)
    start = time.monotonic()
    with open(step.log, "a") as log:
        print(f"$ {' '.join(step.command)}", file=log, flush=True)
        code = subprocess.run(step.command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise StepError(f"step {step.name} failed (exit {code}); see {step.log}")
    if step.collect is not None:
        write_json(step.result, step.collect())
    if not step.result.exists():
        raise StepError(f"step {step.name} finished without writing {step.result}; see {step.log}")
    return time.monotonic() - start


def run_chains(
    chains: Sequence[Sequence[Step]],
    jobs: int,
    cpus: int | None = None,
    *,
    may_start: Callable[[int], bool] | None = None,
    finished: Callable[[int, list[float | None]], None] | None = None,
) -> None:
    """Run chains of steps `jobs` chains at a time; a chain's steps run in order (an evaluation after the
    pretraining it reads), so results arrive per chain rather than per phase. Finished steps are skipped and
    the first failure cancels the chains not yet started.

    `may_start(i)` is asked just before chain i would start (False: it is left out, e.g. past a deadline);
    `finished(i, seconds)` is called when all its steps are done, with each step's wall seconds (None: done
    before)."""
    total = sum(len(chain) for chain in chains)
    skipped = sum(step.result.exists() for chain in chains for step in chain)
    if skipped:
        print(f"  {skipped} of {total} steps already done (resuming)", flush=True)
    threads = max(1, (cpus or os.cpu_count() or 1) // max(1, jobs))

    def run_chain(index: int) -> None:
        chain = chains[index]
        if all(step.result.exists() for step in chain) or (may_start is not None and not may_start(index)):
            return
        seconds: list[float | None] = []
        for step in chain:
            if step.result.exists():
                seconds.append(None)
                continue
            seconds.append(run_step(step, threads))
            print(f"  done {step.name} ({seconds[-1]:.0f} s)", flush=True)
        if finished is not None:
            finished(index, seconds)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_chain, index) for index in range(len(chains))]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def run_steps(steps: Sequence[Step], jobs: int, cpus: int | None = None) -> None:
    """Run independent steps `jobs` at a time (chains of one step)."""
    run_chains([[step] for step in steps], jobs, cpus)


def pretrain_step(run: Path, pretraining: Pretraining, seed: int, folder: str = "pretrain") -> Step:
    """Pretrain one setting with one seed through tools/train.py; the result holds the loss curve and the training
    seconds at each logged iteration."""
    work_dir = run / folder / pretraining.name / f"seed{seed}"
    config = work_dir / "config.py"
    work_dir.mkdir(parents=True, exist_ok=True)
    if not config.exists():
        config.write_text(pretraining.config_text(seed))
    command = [sys.executable, "tools/train.py", str(config), "--work-dir", str(work_dir)]
    command += ["--amp"] if pretraining.amp else []
    if (work_dir / "last_checkpoint").exists():
        command.append("--resume")

    def collect() -> dict:
        log = training_log(work_dir)
        return {
            "losses": [(it, loss) for it, loss, _ in log],
            "seconds": [(it, seconds) for it, _, seconds in log],
            "checkpoint": str(final_checkpoint(work_dir, pretraining)),
        }

    return Step(
        name=f"{folder} {pretraining.name} seed {seed}",
        command=command,
        result=work_dir / "result.json",
        log=work_dir / "train.log",
        collect=collect,
    )


def calibration_step(run: Path, pretraining: Pretraining) -> Step:
    """A `CALIBRATION_ITERS`-iteration run of the setting; the result is its median seconds per iteration."""
    step = pretrain_step(run, calibration_setting(pretraining), seed=0, folder="calibrate")
    work_dir = step.result.parent

    def collect() -> dict:
        times = [record["time"] for record in scalar_records(work_dir) if "time" in record][1:]
        if not times:
            raise StepError(f"calibration of {pretraining.name} logged no iteration times; see {step.log}")
        return {"seconds_per_iter": statistics.median(times), "times": times}

    result = calibration_path(run, pretraining)
    return replace(step, name=f"calibrate {pretraining.name}", result=result, collect=collect)


def calibration_path(run: Path, pretraining: Pretraining) -> Path:
    """Where the calibration of `pretraining` lands: one per setting, whatever its budget or lr scale (neither
    changes the cost of an iteration)."""
    return run / "calibrate" / calibration_setting(pretraining).name / "calibration.json"


def calibration_setting(pretraining: Pretraining) -> Pretraining:
    return replace(pretraining, iters=CALIBRATION_ITERS, lr_scale=1.0)


def budget_iters(run: Path, pretraining: Pretraining, minutes: float) -> int | None:
    """Iterations that fill `minutes` of training at the calibrated speed, or None before calibration; at least two
    logged windows, so a run has a warm-up, a decay and a loss curve."""
    path = calibration_path(run, pretraining)
    if not path.exists():
        return None
    return max(2 * LOG_INTERVAL, int(minutes * 60 / read_json(path)["seconds_per_iter"]))


def final_checkpoint(work_dir: Path, pretraining: Pretraining) -> Path:
    return work_dir / f"iter_{pretraining.iters}.pth"


def scalar_records(work_dir: Path) -> list[dict]:
    """Every record mmengine logged in `work_dir`'s sessions (a resumed run logs in a new folder), in order."""
    return [json.loads(line) for path in sorted(work_dir.glob("*/vis_data/scalars.json")) for line in path.open()]


def training_log(work_dir: Path) -> list[tuple[int, float, float]]:
    """(iteration, logged loss, training seconds so far) for every logged iteration of a run.

    A logged `time` is the mean seconds per iteration over the `LOG_INTERVAL` iterations before it (the generated
    configs log that often, over that window), so the seconds so far add interval × time; a resumed session
    re-logs the iterations after its checkpoint and the later value counts.
    """
    points = {int(r["iter"]): r for r in scalar_records(work_dir) if "loss" in r}
    log, seconds, previous = [], 0.0, 0
    for iteration in sorted(points):
        record = points[iteration]
        seconds += (iteration - previous) * float(record.get("time", 0.0))
        log.append((iteration, float(record["loss"]), seconds))
        previous = iteration
    return log


@dataclass(frozen=True)
class Evaluation:
    """The protocols and data shared by every evaluation in a comparison.

    `labelled=N` is the low-label regime: every protocol trains on a fixed stratified N training images (else on
    the first `train_limit`); top-1 is on the test images (the first `test_limit`), or, with
    `evaluate_on='validation'`, on 2000 other training images (for sweeps, which must not look at the test split).
    """

    protocols: tuple[str, ...] = ("knn", "linear", "finetune")
    labelled: int | None = 1000
    train_limit: int | None = None
    test_limit: int | None = None
    evaluate_on: str = "test"
    linear_epochs: int = 100
    finetune: FineTuneRecipe = field(default_factory=lambda: FineTuneRecipe(epochs=30, warmup_epochs=3))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Evaluation":
        values = json.loads(text)
        recipe = values.pop("finetune")
        recipe["crop_scale"] = tuple(recipe["crop_scale"])
        return cls(**{**values, "protocols": tuple(values["protocols"]), "finetune": FineTuneRecipe(**recipe)})


def evaluate_step(
    run: Path, evaluation: Evaluation, seed: int, *, checkpoint: Path | None, backbone: str, input_size: int, tag: str
) -> Step:
    """`experiments.transfer` on a pretraining checkpoint, or on random init of `backbone` when `checkpoint` is
    None; fine-tuning leaves its curve in `<folder>/finetune/curve.json`."""
    folder = evaluation_path(run, tag, seed).parent
    command = [sys.executable, "-m", "experiments.transfer"]
    command += [str(checkpoint)] if checkpoint is not None else []
    command += ["--backbone", backbone, "--input-size", str(input_size), "--seed", str(seed)]
    command += ["--evaluation", evaluation.to_json(), "--work-dir", str(folder), "--json", str(folder / "result.json")]
    return Step(name=f"evaluate {tag} seed {seed}", command=command, result=folder / "result.json", log=folder / "log")


def measure_step(
    run: Path,
    backbone: str,
    *,
    sparse: bool,
    input_size: int,
    batch_size: int,
    mask_ratio: float,
    decoder: dict | None = None,
) -> Step:
    """Throughput, peak memory and FLOPs of one backbone's pretraining step (`experiments.measure`), with the
    run's decoder (None: the measurement's default UNet)."""
    mode = "sparse" if sparse else "dense"
    result = measurement_path(run, backbone, sparse, input_size, batch_size, mask_ratio, decoder)
    command = [sys.executable, "-m", "experiments.measure", backbone, "--sparse", str(int(sparse))]
    command += ["--input-size", str(input_size), "--batch-size", str(batch_size), "--mask-ratio", str(mask_ratio)]
    command += [] if decoder is None else ["--decoder", json.dumps(decoder)]
    command += ["--json", str(result)]
    return Step(name=f"measure {backbone} {mode}", command=command, result=result, log=result.with_suffix(".log"))


def measurement_path(
    run: Path,
    backbone: str,
    sparse: bool,
    input_size: int,
    batch_size: int,
    mask_ratio: float,
    decoder: dict | None = None,
) -> Path:
    """Where `measure_step` writes the figures of one backbone and mode."""
    mode = "sparse" if sparse else "dense"
    tag = "" if decoder is None else "-" + "-".join(f"{key}{value}" for key, value in sorted(decoder.items()))
    name = f"{backbone}-{mode}-{input_size}px-b{batch_size}-mask{round(mask_ratio * 100)}{tag}.json"
    return run / "measure" / name


def pretraining_path(run: Path, pretraining: Pretraining, seed: int) -> Path:
    """Where `pretrain_step` records a finished run (its loss curve and final checkpoint)."""
    return run / "pretrain" / pretraining.name / f"seed{seed}" / "result.json"


def evaluation_path(run: Path, tag: str, seed: int) -> Path:
    """Where `evaluate_step` writes the accuracy per protocol of one evaluated encoder and seed."""
    return run / "evaluate" / tag / f"seed{seed}" / "result.json"
