"""Run a comparison, an ablation or a per-family sweep end to end in a run folder, resumably, and write its report.

Phases: (1) for backbone comparisons, the cost of one step per backbone and mode, measured alone on the machine
so throughput is not shared; (2) with a wall-time budget, a short calibration run of every variant, which turns
the budget into iterations (equal wall time per run, not equal images); (3) every variant × seed pretrained then
evaluated, and random init of the same backbones evaluated with the same seeds; (4) the report. The run folder
remembers its settings (and its recipes' contents) and refuses to resume under different ones, so a report never
mixes two settings.
"""

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from experiments.plan import (
    DECODERS,
    Pretraining,
    Variant,
    ablation_plan,
    comparison_plan,
    family_recipe,
    recipe_config,
    sweep_plan,
)
from experiments.recipes import RecipeSummary, digest, summarize
from experiments.report import ablation_report, comparison_report, header, sweep_report
from experiments.results import gather_curves, gather_random_init, gather_variant, random_init_tag
from experiments.runs import (
    Evaluation,
    Step,
    budget_iters,
    calibration_path,
    calibration_step,
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
from hiermae.backbones import encoder_family
from hiermae.downstream.finetune import FineTuneRecipe
from hiermae.downstream.layer_decay import layer_decay_rate


@dataclass(frozen=True)
class Settings:
    """Everything that decides a comparison's numbers (not how many jobs run at once).

    `minutes`: equal wall-time budget per pretraining run (iterations calibrated per variant), else `base.iters`.
    `family_recipes`: every backbone starts from its family's recipe config (else the shared bases).
    `sweep`: the per-family grid of `plan.SWEEPS` instead of one setting per backbone.
    """

    backbones: tuple[str, ...]
    seeds: tuple[int, ...]
    base: Pretraining
    evaluation: Evaluation
    ablate: tuple[str, ...] = ()
    minutes: float | None = None
    family_recipes: bool = False
    sweep: bool = False

    def variants(self) -> list[Variant]:
        """The plan's variants with the iterations they were given (before calibration: `base.iters`)."""
        if self.sweep:
            return sweep_plan(list(self.backbones), self.base)
        if self.ablate:
            return ablation_plan(list(self.ablate), self.base)
        return comparison_plan(list(self.backbones), self.base, self.family_recipes)

    def recipes(self) -> list[str | None]:
        return sorted({v.pretraining.recipe for v in self.variants()}, key=str)

    def as_dict(self) -> dict:
        return {**asdict(self), "recipe_digests": {str(r): digest(r) for r in self.recipes()}}


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


def budgeted(run: Path, settings: Settings) -> list[Variant]:
    """The variants with their iteration budgets: calibrated to `settings.minutes` where the calibration exists
    (variants not calibrated yet are left out), else as planned."""
    if settings.minutes is None:
        return settings.variants()
    variants = []
    for variant in settings.variants():
        iters = budget_iters(run, variant.pretraining, settings.minutes)
        if iters is not None:
            variants.append(replace(variant, pretraining=replace(variant.pretraining, iters=iters)))
    return variants


def plan_backbones(variants: list[Variant]) -> list[str]:
    return list(dict.fromkeys(v.pretraining.backbone for v in variants))


def measurement_steps(run: Path, settings: Settings, backbones: list[str]) -> list[Step]:
    return [measure_step(run, name, sparse=sparse, **measured_setting(settings, name))
            for name in backbones for sparse in (True, False)]  # fmt: skip


def measured_setting(settings: Settings, backbone: str) -> dict:
    """What the cost measurement of `backbone` holds equal to its runs: size, batch, mask ratio and decoder (its
    recipe's unless the settings override them)."""
    setting = next(v.pretraining for v in settings.variants() if v.pretraining.backbone == backbone)
    model = recipe_config(setting.recipe).model
    ratio = setting.mask_ratio if setting.mask_ratio is not None else float(model.mask.mask_ratio)
    decoder = DECODERS[setting.decoder] if setting.decoder is not None else model.decoder.to_dict()
    decoder = {key: value for key, value in decoder.items() if key != "_delete_"}
    return dict(input_size=setting.input_size, batch_size=setting.batch_size, mask_ratio=ratio, decoder=decoder)


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
        if settings.sweep:
            continue  # a sweep compares settings with each other, not with random init
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
    planned = settings.variants()
    backbones = plan_backbones(planned)
    seeds = list(settings.seeds)
    try:
        if not settings.ablate and not settings.sweep:  # ablations and sweeps compare accuracy only
            print(f"cost of one step ({len(backbones)} backbones × sparse, dense reference)", flush=True)
            run_steps(measurement_steps(run, settings, backbones), jobs=1)
        if settings.minutes is not None:
            print(f"calibration ({len(planned)} variants, {settings.minutes:g} min each)", flush=True)
            run_steps([calibration_step(run, v.pretraining) for v in planned], jobs=jobs)
        variants = budgeted(run, settings)
        print(f"pretraining and evaluation ({len(variants)} variants, random init, × {len(seeds)} seeds)", flush=True)
        run_chains(training_chains(run, settings, variants, backbones), jobs=jobs)
    finally:  # an interrupted session's time counts too
        minutes = record_session(run, time.monotonic() - start) / 60
    timing = f"Wall time of the command: **{minutes:.1f} min** (every session of this run folder together)."
    return write_report(run, settings, report, command, timing)


def progress(run: Path, settings: Settings) -> str:
    """How many calibrations, pretraining runs and evaluations of `settings` have finished in `run`."""
    planned, seeds = settings.variants(), settings.seeds
    variants = budgeted(run, settings)
    pretrained = sum(pretraining_path(run, v.pretraining, s).exists() for v in variants for s in seeds)
    evaluated = sum(evaluation_path(run, v.pretraining.name, s).exists() for v in variants for s in seeds)
    tags = [] if settings.sweep else [random_init_tag(n, settings.base.input_size) for n in plan_backbones(planned)]
    evaluated += sum(evaluation_path(run, tag, s).exists() for tag in tags for s in seeds)
    total = len(planned) * len(seeds)
    text = (
        f"{pretrained} of {total} pretraining runs and {evaluated} of {total + len(tags) * len(seeds)} "
        "evaluations finished"
    )
    if settings.minutes is not None:
        calibrated = sum(calibration_path(run, v.pretraining).exists() for v in planned)
        text = f"{calibrated} of {len(planned)} calibrations, " + text
    return text


def report_so_far(run: Path, settings: Settings, report: Path, command: str) -> Path:
    """Write the report from whatever has finished, marked as partial (a run may still be going)."""
    check_settings(run, settings)
    timing = f"**Partial report**, written while the run was unfinished: {progress(run, settings)}."
    return write_report(run, settings, report, command, timing)


def evaluation_description(evaluation: Evaluation, backbones: list[str]) -> str:
    """The evaluation protocols a run over `backbones` uses, in words, from its settings."""
    if evaluation.labelled is not None:
        data = f"a fixed stratified {evaluation.labelled} training images (the same for every run) train every protocol"
    else:
        data = f"the first {evaluation.train_limit or 60000} training images train every protocol"
    scored = (
        "top-1 on 2000 other training images (validation split; the test split is not used)"
        if evaluation.evaluate_on == "validation"
        else f"top-1 on {'all 10000' if evaluation.test_limit is None else f'the first {evaluation.test_limit}'} "
        "test images"
    )
    recipe = evaluation.finetune
    parts = {
        "knn": "kNN (cosine, k=20) on pooled last-stage features",
        "linear": f"a linear probe on pooled last-stage features (BatchNorm without affine, then a linear layer; "
        f"{count(evaluation.linear_epochs, 'epoch')}, AdamW lr 1e-2)",
        "finetune": (
            f"fine-tuning of the whole network for {count(recipe.epochs, 'epoch')}: AdamW (lr {recipe.base_lr:g} × "
            f"{recipe.batch_size}/256, weight decay {recipe.weight_decay:g}), {layer_decay_text(recipe, backbones)}, "
            f"{count(recipe.warmup_epochs, 'warm-up epoch')} then cosine to 0, label smoothing "
            f"{recipe.label_smoothing:g}, drop path {recipe.drop_path:g}, random-resized crops "
            f"({recipe.crop_scale[0]:g}–{recipe.crop_scale[1]:g} of the area) and flips, batch {recipe.batch_size}, "
            f"{'bf16 autocast' if recipe.amp else 'fp32'}"
        ),
    }
    return f"{data}; {scored}. Protocols: " + "; ".join(parts[p] for p in evaluation.protocols)


def count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def layer_decay_text(recipe: FineTuneRecipe, backbones: list[str]) -> str:
    """The fine-tuning's layer-wise lr decay: the recipe's rate, or each backbone family's own rate."""
    if recipe.layer_decay is not None:
        return f"layer-wise lr decay {recipe.layer_decay:g} for every start"
    families = {encoder_family(name).family: layer_decay_rate(name, pretrained=True) for name in backbones}
    rates = ", ".join(f"{family} {rate:g}" for family, rate in families.items())
    return f"layer-wise lr decay for pretrained weights ({rates}; none for random init)"


def budget_description(settings: Settings, variants: list[Variant]) -> str:
    base = settings.base
    if settings.minutes is not None:
        return (
            f"pretraining budget: **{settings.minutes:g} min of training per run** (equal wall time: batches of "
            f"{base.batch_size}, iterations calibrated per variant in this run folder; measured times in the budget "
            f"table), {precision(base)}"
        )
    return (
        f"pretraining budget: {base.iters} iterations × batch {base.batch_size} = {base.images_seen} images per run, "
        f"{precision(base)}"
    )


def precision(setting: Pretraining) -> str:
    return "bf16 autocast (`tools/train.py --amp`)" if setting.amp else "fp32"


def write_report(run: Path, settings: Settings, report: Path, command: str, timing: str) -> Path:
    """Gather every result in `run` into `report` (markdown) and its plots in a folder named after it."""
    variants = budgeted(run, settings)
    seeds = list(settings.seeds)
    base, evaluation = settings.base, settings.evaluation
    results = [gather_variant(run, variant, seeds) for variant in variants]
    protocols = list(evaluation.protocols)
    folder = report.with_suffix("")
    lines = [
        f"data: Fashion-MNIST at {base.input_size} px; pretraining draws from all 60000 training images without "
        f"their labels; seeds {', '.join(map(str, seeds))} (pretraining init, data order, masks; the same seed for "
        "the evaluation)",
        budget_description(settings, variants),
        f"evaluation: {evaluation_description(evaluation, plan_backbones(settings.variants()))}",
        f"run folder: `{run}` (checkpoints, logs, per-step JSON)",
    ]
    summaries = run_recipes(run, variants, seeds[0])
    if settings.ablate and "baseline" in summaries:
        baseline = summaries["baseline"]
        lines.insert(2, f"baseline pretraining: mask ratio {baseline.mask_ratio:g} of 32-px units; decoder "
                        f"{baseline.decoder}; target {baseline.target}; {baseline.loss} on masked units; AdamW lr "
                        f"{baseline.lr:.2e}, {baseline.warmup_iters} warm-up iterations then cosine")  # fmt: skip
    text = report_text(run, settings, variants, results, protocols, folder, command, timing, lines)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    return report


def report_text(
    run: Path,
    settings: Settings,
    variants: list[Variant],
    results: list,
    protocols: list[str],
    folder: Path,
    command: str,
    timing: str,
    lines: list[str],
) -> str:
    """The markdown of the kind of report `settings` asks for."""
    seeds, base = list(settings.seeds), settings.base
    if settings.sweep:
        preamble = header("Per-family pretraining sweep (CPU)", command, machine_description(), timing, lines)
        defaults = {name: default_label(settings, name) for name in settings.backbones}
        split = "validation split" if settings.evaluation.evaluate_on == "validation" else "test split"
        return sweep_report(results, protocols, defaults, split, folder, preamble)
    if settings.ablate:
        backbone = base.backbone
        lines.insert(0, f"backbone: {backbone}, hiermae {'sparse' if base.sparse else 'dense reference'} path")
        preamble = header(f"hiermae ablations on {backbone} (CPU)", command, machine_description(), timing, lines)
        random_init = gather_random_init(run, backbone, base.input_size, seeds)
        return ablation_report(results, random_init, protocols, list(settings.ablate), folder, preamble)
    backbones = plan_backbones(settings.variants())
    measurements = {
        (name, sparse): read_json(path)
        for name in backbones
        for sparse in (True, False)
        if (path := measurement_path(run, name, sparse, **measured_setting(settings, name))).exists()
    }
    random_init = {name: gather_random_init(run, name, base.input_size, seeds) for name in backbones}
    random_curves = {name: gather_curves(run, random_init_tag(name, base.input_size), seeds) for name in backbones}
    recipes = run_recipes(run, variants, seeds[0])
    title = "ViT, Swin, ConvNeXt and ResNet pretrained by hiermae, each with its family's recipe (CPU)"
    if not settings.family_recipes:
        title = "ViT, Swin, ConvNeXt and ResNet under one masked-pretraining recipe (CPU)"
    preamble = header(title, command, machine_description(), timing, lines)
    return comparison_report(results, random_init, measurements, protocols, folder, preamble, recipes, random_curves)


def run_recipes(run: Path, variants: list[Variant], seed: int) -> dict[str, RecipeSummary]:
    """Each variant's recipe (by label) as its generated config for `seed` set it, where that config exists."""
    summaries = {}
    for variant in variants:
        config = pretraining_path(run, variant.pretraining, seed).parent / "config.py"
        if config.exists():
            summaries[variant.label] = summarize(config, variant.pretraining.recipe)
    return summaries


def default_label(settings: Settings, backbone: str) -> str | None:
    """The sweep label of the variant that matches `backbone`'s recipe as committed (its mask ratio, lr × 1), or
    None when the grid does not contain the recipe's mask ratio."""
    ratio = float(recipe_config(family_recipe(backbone)).model.mask.mask_ratio)
    matches = [v.label for v in settings.variants() if v.group == backbone and v.pretraining.lr_scale == 1.0
               and v.pretraining.mask_ratio == ratio]  # fmt: skip
    return matches[0] if matches else None
