"""Run a comparison or an ablation end to end in a run folder, resumably, and write its report.

Phases: (1) for backbone comparisons, the cost of one step per backbone and mode, measured alone on the machine
so throughput is not shared; (2) every variant × seed pretrained then evaluated, and random init of the same
backbones evaluated with the same seeds; (3) the report. The run folder remembers its
settings and refuses to resume under different ones, so a report never mixes two settings.
"""

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hiermae.compare.plan import Pretraining, Variant, ablation_plan, comparison_plan
from hiermae.compare.report import ablation_report, comparison_report, header
from hiermae.compare.results import gather_random_init, gather_variant, random_init_tag
from hiermae.compare.runs import (
    Evaluation,
    Step,
    evaluate_step,
    evaluation_path,
    final_checkpoint,
    measure_step,
    measurement_path,
    pretrain_step,
    pretraining_path,
    read_json,
    run_chains,
    run_steps,
    write_json,
)


@dataclass(frozen=True)
class Settings:
    """Everything that decides a comparison's numbers (not how many jobs run at once)."""

    backbones: tuple[str, ...]
    seeds: tuple[int, ...]
    base: Pretraining
    evaluation: Evaluation
    ablate: tuple[str, ...] = ()

    def variants(self) -> list[Variant]:
        if self.ablate:
            return ablation_plan(list(self.ablate), self.base)
        return comparison_plan(list(self.backbones), self.base)

    def as_dict(self) -> dict:
        return asdict(self)


class SettingsMismatchError(ValueError):
    """The run folder was started with other settings."""


def check_settings(run: Path, settings: Settings) -> None:
    """Record the settings on the first start; on a resume, refuse settings that differ, naming what changed."""
    path = run / "settings.json"
    current = settings.as_dict()
    if not path.exists():
        write_json(path, current)
        return
    recorded = read_json(path)
    if recorded != read_json_roundtrip(current):
        changed = sorted(key for key in current if recorded.get(key) != read_json_roundtrip(current[key]))
        raise SettingsMismatchError(
            f"{run} was started with different settings ({', '.join(changed)}); "
            f"rerun with the same options to resume, or choose a new --out"
        )


def read_json_roundtrip(value: object) -> object:
    """`value` as it reads back from JSON (tuples become lists), for comparing with a recorded file."""
    return json.loads(json.dumps(value))


def machine_description() -> str:
    cpus = len(os.sched_getaffinity(0))
    return f"{platform.machine()}, {cpus} CPU cores, {platform.processor() or 'CPU'}, torch {torch.__version__}"


def record_session(run: Path, seconds: float) -> float:
    """Add this session's wall time to the run's total and return the total in seconds."""
    path = run / "sessions.json"
    sessions = read_json(path) if path.exists() else []
    sessions.append(seconds)
    write_json(path, sessions)
    return sum(sessions)


def measurement_steps(run: Path, settings: Settings, backbones: list[str]) -> list[Step]:
    base = settings.base
    return [
        measure_step(run, name, sparse=sparse, input_size=base.input_size, batch_size=base.batch_size,
                     mask_ratio=base.mask_ratio)
        for name in backbones
        for sparse in (True, False)
    ]  # fmt: skip


def training_chains(run: Path, settings: Settings, variants: list[Variant], backbones: list[str]) -> list[list[Step]]:
    """Seed by seed: each variant's pretraining followed by its evaluation, then random init of each backbone.

    Seed-major order means an interrupted or partial run has every variant with its first seeds done, rather
    than some variants with all seeds and others with none.
    """
    chains = []
    for seed in settings.seeds:
        for variant in variants:
            setting = variant.pretraining
            pretraining = pretrain_step(run, setting, seed)
            evaluation = evaluate_step(
                run, settings.evaluation, seed, checkpoint=final_checkpoint(pretraining.result.parent, setting),
                backbone=setting.backbone, input_size=setting.input_size, tag=setting.name,
            )  # fmt: skip
            chains.append([pretraining, evaluation])
        for name in backbones:
            tag = random_init_tag(name, settings.base.input_size)
            chains.append(
                [evaluate_step(run, settings.evaluation, seed, checkpoint=None, backbone=name,
                               input_size=settings.base.input_size, tag=tag)]
            )  # fmt: skip
    return chains


def run_comparison(run: Path, settings: Settings, *, jobs: int, report: Path, command: str) -> Path:
    """Run every missing step of `settings` in `run` and write the report; returns the report's path."""
    start = time.monotonic()
    run.mkdir(parents=True, exist_ok=True)
    check_settings(run, settings)
    variants = settings.variants()
    seeds = list(settings.seeds)
    backbones = sorted({v.pretraining.backbone for v in variants}, key=[v.pretraining.backbone for v in variants].index)
    try:
        if not settings.ablate:  # an ablation report compares accuracy only
            print(f"cost of one step ({len(backbones)} backbones × sparse, dense reference)", flush=True)
            run_steps(measurement_steps(run, settings, backbones), jobs=1)
        print(f"pretraining and evaluation ({len(variants)} variants, random init, × {len(seeds)} seeds)", flush=True)
        run_chains(training_chains(run, settings, variants, backbones), jobs=jobs)
    finally:  # an interrupted session's time counts too
        minutes = record_session(run, time.monotonic() - start) / 60
    timing = f"Wall time of the command: **{minutes:.1f} min** (every session of this run folder together)."
    return write_report(run, settings, report, command, timing)


def progress(run: Path, settings: Settings) -> str:
    """How many pretraining runs and evaluations of `settings` have finished in `run`."""
    variants, seeds = settings.variants(), settings.seeds
    backbones = {v.pretraining.backbone for v in variants}
    pretrained = sum(pretraining_path(run, v.pretraining, s).exists() for v in variants for s in seeds)
    evaluated = sum(evaluation_path(run, v.pretraining.name, s).exists() for v in variants for s in seeds)
    tags = [random_init_tag(name, settings.base.input_size) for name in backbones]
    evaluated += sum(evaluation_path(run, tag, s).exists() for tag in tags for s in seeds)
    total = len(variants) * len(seeds)
    return (
        f"{pretrained} of {total} pretraining runs and {evaluated} of {total + len(tags) * len(seeds)} "
        "evaluations finished"
    )


def report_so_far(run: Path, settings: Settings, report: Path, command: str) -> Path:
    """Write the report from whatever has finished, marked as partial (a run may still be going)."""
    check_settings(run, settings)
    timing = f"**Partial report**, written while the run was unfinished: {progress(run, settings)}."
    return write_report(run, settings, report, command, timing)


def protocol_description(evaluation: Evaluation) -> str:
    """The evaluation protocols a run uses, in words."""
    parts = {
        "knn": "kNN (cosine, k=20) on pooled last-stage features",
        "linear": f"a linear probe ({evaluation.linear_epochs} epochs) on the same features",
        "finetune": f"fine-tuning of the whole network ({evaluation.finetune_epochs} epoch(s))",
    }
    return "; ".join(parts[p] for p in evaluation.protocols)


def write_report(run: Path, settings: Settings, report: Path, command: str, timing: str) -> Path:
    """Gather every result in `run` into `report` (markdown) and its plots in a folder named after it."""
    variants = settings.variants()
    seeds = list(settings.seeds)
    base, evaluation = settings.base, settings.evaluation
    results = [gather_variant(run, variant, seeds) for variant in variants]
    protocols = list(evaluation.protocols)
    folder = report.with_suffix("")
    lines = [
        f"data: Fashion-MNIST at {base.input_size} px; budget {base.iters} iterations × batch {base.batch_size} = "
        f"{base.images_seen} images seen per run; seeds {', '.join(map(str, seeds))} (pretraining init, data order, "
        "masks; the same seed for the evaluation)",
        f"masked pretraining: random mask, ratio {base.mask_ratio}, mask unit 32 px; decoder {base.decoder}; "
        f"target {base.target}; MSE on masked units; AdamW lr 1.5e-3, warm-up then cosine",
        f"evaluation: first {evaluation.train_limit} training and {evaluation.test_limit} test images; "
        + protocol_description(evaluation),
        f"run folder: `{run}` (checkpoints, logs, per-step JSON)",
    ]
    if settings.ablate:
        backbone = base.backbone
        lines.insert(0, f"backbone: {backbone}, hiermae {'sparse' if base.sparse else 'dense reference'} path")
        title = f"hiermae ablations on {backbone} (CPU)"
        preamble = header(title, command, machine_description(), timing, lines)
        random_init = gather_random_init(run, backbone, base.input_size, seeds)
        text = ablation_report(results, random_init, protocols, list(settings.ablate), folder, preamble)
    else:
        backbones = [v.pretraining.backbone for v in variants]
        measurements = {
            (name, sparse): read_json(path)
            for name in backbones
            for sparse in (True, False)
            if (path := measurement_path(run, name, sparse, base.input_size, base.batch_size, base.mask_ratio)).exists()
        }
        random_init = {name: gather_random_init(run, name, base.input_size, seeds) for name in backbones}
        preamble = header("ViT, Swin, ConvNeXt and ResNet under one masked-pretraining recipe (CPU)", command,
                          machine_description(), timing, lines)  # fmt: skip
        text = comparison_report(results, random_init, measurements, protocols, folder, preamble)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    return report
