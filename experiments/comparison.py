"""Run a comparison, an ablation or a per-family sweep end to end in a run folder, resumably, and write its report.

Phases: (1) for backbone comparisons, the cost of one step per backbone and mode, measured alone on the machine
so throughput is not shared; (2) with a wall-time budget, a short calibration run of every variant, which turns
the budget into iterations (equal wall time per run, not equal images); (3) every variant × seed pretrained then
evaluated, and random init of the same backbones evaluated with the same seeds, chain by chain; (4) the report.

Every finished chain, calibration and measurement lands in the report's ledger (`experiments.ledger`), which
lives in the repository: a later session (chunk) skips what the ledger holds, even in a new run folder, and the
report is written from it. The ledger and the run folder remember their settings (and the recipes' contents) and
refuse to resume under different ones, so a report never mixes two settings. `stop_after` starts no chain that its
estimate (`experiments.schedule`) says cannot finish in time; `plan` prints those estimates before any training.
"""

import datetime
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from experiments.ledger import Chain, Ledger, ledger_folder, machine_description
from experiments.plan import (
    DECODERS,
    Pretraining,
    Variant,
    ablation_plan,
    budget_plan,
    comparison_plan,
    family_recipe,
    recipe_config,
    sweep_plan,
)
from experiments.recipes import RecipeSummary, digest, summarize
from experiments.report import ablation_report, budget_curve_section, comparison_report, header, sweep_report
from experiments.results import gather_curves, gather_random_init, gather_variant, random_init_tag
from experiments.runs import (
    Evaluation,
    Step,
    budget_iters,
    calibration_path,
    calibration_step,
    evaluate_step,
    final_checkpoint,
    measure_step,
    measurement_path,
    pretrain_step,
    read_json,
    run_chains,
    run_steps,
    write_json,
)
from experiments.schedule import Estimate, estimate, plan_table
from hiermae.backbones import encoder_family
from hiermae.downstream.finetune import FineTuneRecipe
from hiermae.downstream.layer_decay import layer_decay_rate


@dataclass(frozen=True)
class Settings:
    """Everything that decides a comparison's numbers (not how many jobs run at once).

    `minutes`: equal wall-time budget per pretraining run (iterations calibrated per variant), else `base.iters`.
    `family_recipes`: every backbone starts from its family's recipe config (else the shared bases).
    `sweep`: the per-family grid of `plan.SWEEPS` instead of one setting per backbone.
    `budget_curve`: extra wall-time budgets (minutes) for `budget_backbone`, for the curve of gain against
    pretraining minutes.
    """

    backbones: tuple[str, ...]
    seeds: tuple[int, ...]
    base: Pretraining
    evaluation: Evaluation
    ablate: tuple[str, ...] = ()
    minutes: float | None = None
    family_recipes: bool = False
    sweep: bool = False
    budget_curve: tuple[float, ...] = ()
    budget_backbone: str | None = None

    def variants(self) -> list[Variant]:
        """The plan's variants with the iterations they were given (before calibration: `base.iters`)."""
        if self.sweep:
            return sweep_plan(list(self.backbones), self.base)
        if self.ablate:
            return ablation_plan(list(self.ablate), self.base)
        variants = comparison_plan(list(self.backbones), self.base, self.family_recipes)
        if self.budget_curve:
            backbone = self.budget_backbone or self.backbones[0]
            variants += budget_plan(backbone, self.base, self.budget_curve, self.family_recipes)
        return variants

    def recipes(self) -> list[str | None]:
        return sorted({v.pretraining.recipe for v in self.variants()}, key=str)

    def as_dict(self) -> dict:
        """The settings as recorded in a ledger. Where fine-tuning takes a family's own head lr or layer decay (`None`
        in the recipe), the values themselves are recorded too, so a later change of one is refused like any other
        setting."""
        recorded = {**asdict(self), "recipe_digests": {str(r): digest(r) for r in self.recipes()}}
        finetune = self.evaluation.finetune
        if finetune.base_lr is None or finetune.layer_decay is None:
            recorded["finetune_by_backbone"] = {
                name: {
                    "head_base_lr": finetune.head_base_lr(name),
                    "layer_decay": layer_decay_rate(name, pretrained=True, rate=finetune.layer_decay),
                }
                for name in plan_backbones(self.variants())
            }
        return recorded


class SettingsMismatchError(ValueError):
    """The run folder was started with other settings."""


def check_settings(run: Path, settings: Settings, option: str = "--out") -> None:
    """Record the settings on the first start; on a resume, refuse settings that differ, naming what changed and
    the `option` that picks another folder."""
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
            f"rerun with the same options to resume, or choose a new {option}"
        )


def read_json_roundtrip(value: object) -> object:
    """`value` as it reads back from JSON (tuples become lists), for comparing with a recorded file."""
    return json.loads(json.dumps(value))


def budgeted(run: Path, settings: Settings) -> list[Variant]:
    """The variants with their iteration budgets: calibrated to `settings.minutes` where the calibration exists
    (variants not calibrated yet are left out), else as planned."""
    if settings.minutes is None:
        return settings.variants()
    variants = []
    for variant in settings.variants():
        iters = budget_iters(run, variant.pretraining, variant.minutes or settings.minutes)
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


def plan_chains(settings: Settings, variants: list[Variant], backbones: list[str]) -> list[Chain]:
    """Seed by seed: each variant's pretraining followed by its evaluation, then random init of each backbone; the
    budget curve's extra points come last.

    Seed-major order means an interrupted or partial run has every variant with its first seeds done, rather
    than some variants with all seeds and others with none.
    """
    chains, extra = [], []
    for seed in settings.seeds:
        for variant in variants:
            chain = Chain(variant.pretraining.name, seed, variant.pretraining.backbone, variant.pretraining)
            (extra if variant.group == "budget" else chains).append(chain)
        if not settings.sweep:  # a sweep compares settings with each other, not with random init
            chains += [Chain(random_init_tag(name, settings.base.input_size), seed, name, None) for name in backbones]
    return chains + extra


def chain_steps(run: Path, settings: Settings, chain: Chain) -> list[Step]:
    """The steps of `chain` in run folder `run`."""
    input_size = settings.base.input_size if chain.pretraining is None else chain.pretraining.input_size
    if chain.pretraining is None:
        return [evaluate_step(run, settings.evaluation, chain.seed, checkpoint=None, backbone=chain.backbone,
                              input_size=input_size, tag=chain.tag)]  # fmt: skip
    pretraining = pretrain_step(run, chain.pretraining, chain.seed)
    checkpoint = final_checkpoint(pretraining.result.parent, chain.pretraining)
    evaluation = evaluate_step(run, settings.evaluation, chain.seed, checkpoint=checkpoint, backbone=chain.backbone,
                               input_size=input_size, tag=chain.tag)  # fmt: skip
    return [pretraining, evaluation]


def open_ledger(run: Path, settings: Settings, report: Path) -> Ledger:
    """The report's ledger, checked against `settings`, with its calibrations and measurements restored into `run`."""
    ledger = Ledger(ledger_folder(report))
    check_settings(ledger.folder, settings, "--report (the ledger is the report folder's runs/)")
    run.mkdir(parents=True, exist_ok=True)
    check_settings(run, settings)
    ledger.restore(run, [])
    return ledger


def calibrate(run: Path, settings: Settings, ledger: Ledger, jobs: int, measure: bool = True) -> None:
    """Measure (`measure`) and calibrate what the ledger lacks, and record it in the ledger. Calibration runs also
    without a wall-time budget: the estimates of `--plan` and `--stop-after` start from it."""
    planned = settings.variants()
    backbones = plan_backbones(planned)
    if measure and not settings.ablate and not settings.sweep:  # ablations and sweeps compare accuracy only
        print(f"cost of one step ({len(backbones)} backbones × sparse, dense reference)", flush=True)
        run_steps(measurement_steps(run, settings, backbones), jobs=1)
        ledger.record_files(run)
    steps = {calibration_path(run, v.pretraining): calibration_step(run, v.pretraining) for v in planned}
    print(f"calibration ({len(steps)} settings)", flush=True)
    run_steps(list(steps.values()), jobs=jobs)
    ledger.record_files(run)


def estimates(run: Path, settings: Settings, ledger: Ledger, chains: list[Chain]) -> dict[Chain, Estimate | None]:
    """Each chain's estimate from the calibration and the chains the ledger has observed."""
    calibrated = {}
    for variant in settings.variants():
        calibrated.setdefault(variant.pretraining.backbone, variant.pretraining)
    observed = ledger.chains()
    return {chain: estimate(chain, run, settings.evaluation, calibrated, observed) for chain in chains}


def show_plan(run: Path, settings: Settings, *, jobs: int, report: Path) -> str:
    """Calibrate what is missing, then the `--plan` table of every chain with its estimated minutes."""
    ledger = open_ledger(run, settings, report)
    calibrate(run, settings, ledger, jobs, measure=False)
    chains = plan_chains(settings, budgeted(run, settings), plan_backbones(settings.variants()))
    guesses = estimates(run, settings, ledger, chains)
    return plan_table([(chain, guesses[chain], ledger.has(chain)) for chain in chains], jobs)


def run_comparison(
    run: Path, settings: Settings, *, jobs: int, report: Path, command: str, stop_after: float | None = None
) -> Path:
    """Run every chain of `settings` that the ledger lacks, recording each in the ledger as it finishes, and write
    the report; with `stop_after` (minutes), start no chain whose estimate ends past that time. Returns the
    report's path."""
    started, start = datetime.datetime.now(datetime.UTC), time.monotonic()
    ledger = open_ledger(run, settings, report)
    finished = 0
    try:
        calibrate(run, settings, ledger, jobs)
        variants = budgeted(run, settings)
        chains = plan_chains(settings, variants, plan_backbones(settings.variants()))
        ledger.restore(run, chains)
        recorded = settings.as_dict()
        for chain in chains:  # finished in this run folder by a session before the ledger recorded it
            if not ledger.has(chain) and all(step.result.exists() for step in chain_steps(run, settings, chain)):
                ledger.record_chain(run, chain, recorded, {"pretrain": None, "evaluate": None})
        todo = [chain for chain in chains if not ledger.has(chain)]
        guesses = estimates(run, settings, ledger, todo) if stop_after is not None else {}
        seeds = len(settings.seeds)
        print(f"pretraining and evaluation ({len(variants)} variants, random init, × {seeds} seeds): "
              f"{len(todo)} of {len(chains)} chains to run", flush=True)  # fmt: skip

        def may_start(index: int) -> bool:
            if stop_after is None:
                return True
            guess = guesses[todo[index]]
            left = stop_after * 60 - (time.monotonic() - start)
            if guess is not None and guess.seconds <= left:
                return True
            needs = "an unknown time" if guess is None else f"~{guess.seconds / 60:.1f} min"
            print(f"  not started: {todo[index].tag} seed {todo[index].seed} needs {needs}, "
                  f"{max(0.0, left) / 60:.1f} min left (--stop-after)", flush=True)  # fmt: skip
            return False

        def done(index: int, seconds: list[float | None]) -> None:
            nonlocal finished
            chain = todo[index]
            names = ["pretrain", "evaluate"] if chain.pretraining is not None else ["evaluate"]
            ledger.record_chain(run, chain, recorded, dict(zip(names, seconds)))
            finished += 1

        run_chains([chain_steps(run, settings, chain) for chain in todo], jobs=jobs, may_start=may_start,
                   finished=done)  # fmt: skip
    finally:  # an interrupted session's time counts too
        ledger.record_session(started, time.monotonic() - start, finished)
    return write_report(run, settings, report, command, ledger)


def progress(run: Path, settings: Settings, ledger: Ledger) -> tuple[int, int]:
    """(chains in the ledger, chains planned) for `settings`; chains wait for their calibration to be planned."""
    planned = settings.variants()
    chains = plan_chains(settings, budgeted(run, settings), plan_backbones(planned))
    uncalibrated = 0
    if settings.minutes is not None:
        uncalibrated = sum(not calibration_path(run, v.pretraining).exists() for v in planned) * len(settings.seeds)
    return sum(ledger.has(chain) for chain in chains), len(chains) + uncalibrated


def report_from_ledger(settings: Settings, report: Path, command: str, out: Path) -> Path:
    """Write the whole report from the ledger alone (no run folder needed: it is rebuilt in a temporary folder)."""
    ledger = Ledger(ledger_folder(report))
    if not (ledger.folder / "settings.json").exists():
        raise SettingsMismatchError(f"no ledger at {ledger.folder}: run the comparison first (same --report)")
    check_settings(ledger.folder, settings, "--report (the ledger is the report folder's runs/)")
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder)
        ledger.restore(run, [])
        ledger.restore(run, plan_chains(settings, budgeted(run, settings), plan_backbones(settings.variants())))
        return write_report(run, settings, report, command, ledger, shown_run=out)


def timing_text(run: Path, settings: Settings, ledger: Ledger) -> str:
    """Machine time across the ledger's chunks, or how far a partial run has come."""
    done, total = progress(run, settings, ledger)
    minutes = sum(session["minutes"] for session in ledger.sessions())
    chunks = len(ledger.sessions())
    text = f"Machine time: **{minutes:.1f} min** in {chunks} chunk{'' if chunks == 1 else 's'} (table at the end)."
    if done < total:
        text = f"**Partial report**: {done} of {total} chains in the ledger. " + text
    return text


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
    lp_ft = ", the head of pretrained weights starting as a linear probe of them (LP-FT)" if recipe.probe_head else ""
    parts = {
        "knn": "kNN (cosine, k=20) on pooled last-stage features",
        "linear": f"a linear probe on pooled last-stage features (BatchNorm without affine, then a linear layer; "
        f"{count(evaluation.linear_epochs, 'epoch')}, AdamW lr 1e-2)",
        "finetune": (
            f"fine-tuning of the whole network for {count(recipe.epochs, 'epoch')}: AdamW (head lr "
            f"{head_lr_text(recipe, backbones)} × {recipe.batch_size}/256, weight decay {recipe.weight_decay:g}), "
            f"{layer_decay_text(recipe, backbones)}, "
            f"{count(recipe.warmup_epochs, 'warm-up epoch')} then cosine to 0, label smoothing "
            f"{recipe.label_smoothing:g}, drop path {recipe.drop_path:g}, {augmentation_text(recipe)}, batch "
            f"{recipe.batch_size}, {'bf16 autocast' if recipe.amp else 'fp32'}"
            + lp_ft
        ),
    }
    return f"{data}; {scored}. Protocols: " + "; ".join(parts[p] for p in evaluation.protocols)


def augmentation_text(recipe: FineTuneRecipe) -> str:
    """The fine-tuning recipe's image augmentation, in words."""
    if tuple(recipe.crop_scale) == (1.0, 1.0):
        return "whole images (no random crops) and flips"
    return f"random-resized crops ({recipe.crop_scale[0]:g}–{recipe.crop_scale[1]:g} of the area) and flips"


def count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def by_family(backbones: list[str], value: Callable[[str], float]) -> str:
    """'resnet 0.01, swin 0.001': `value` of each backbone, named by its family (each family once)."""
    families = {encoder_family(name).family: value(name) for name in backbones}
    return ", ".join(f"{family} {number:g}" for family, number in families.items())


def head_lr_text(recipe: FineTuneRecipe, backbones: list[str]) -> str:
    """The fine-tuning head's lr per 256 images: the recipe's, or each backbone family's own."""
    if recipe.base_lr is not None:
        return f"{recipe.base_lr:g}"
    return f"({by_family(backbones, recipe.head_base_lr)})"


def layer_decay_text(recipe: FineTuneRecipe, backbones: list[str]) -> str:
    """The fine-tuning's layer-wise lr decay: the recipe's rate, or each backbone family's own rate."""
    if recipe.layer_decay is not None:
        return f"layer-wise lr decay {recipe.layer_decay:g} for every start"
    rates = by_family(backbones, lambda name: layer_decay_rate(name, pretrained=True))
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


def write_report(
    run: Path, settings: Settings, report: Path, command: str, ledger: Ledger, shown_run: Path | None = None
) -> Path:
    """Gather every result in `run` into `report` (markdown) and its plots in a folder named after it; the timing,
    the machine and the chunks come from `ledger`, `shown_run` is the run folder the report names."""
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
        f"run folder: `{shown_run or run}` (checkpoints, logs; not kept); ledger: `{ledger.folder}` (one JSON per "
        "finished chain, the report's source)",
    ]
    summaries = run_recipes(variants, seeds[0])
    if settings.ablate and "baseline" in summaries:
        baseline = summaries["baseline"]
        lines.insert(2, f"baseline pretraining: mask ratio {baseline.mask_ratio:g} of 32-px units; decoder "
                        f"{baseline.decoder}; target {baseline.target}; {baseline.loss} on masked units; AdamW lr "
                        f"{baseline.lr:.2e}, {baseline.warmup_iters} warm-up iterations then cosine")  # fmt: skip
    timing = timing_text(run, settings, ledger)
    machines = sorted({session["machine"] for session in ledger.sessions()}) or [machine_description()]
    text = report_text(run, settings, variants, results, protocols, folder, command, timing, lines, machines,
                       summaries)  # fmt: skip
    text += chunk_section(ledger) + reading_section(folder)
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
    machines: list[str],
    recipes: dict[str, RecipeSummary],
) -> str:
    """The markdown of the kind of report `settings` asks for (`recipes`: `run_recipes` of its variants)."""
    machine = "; ".join(machines)
    seeds, base = list(settings.seeds), settings.base
    if settings.sweep:
        preamble = header("Per-family pretraining sweep (CPU)", command, machine, timing, lines)
        defaults = {name: default_label(settings, name) for name in settings.backbones}
        split = "validation split" if settings.evaluation.evaluate_on == "validation" else "test split"
        return sweep_report(results, protocols, defaults, split, folder, preamble)
    if settings.ablate:
        backbone = base.backbone
        lines.insert(0, f"backbone: {backbone}, hiermae {'sparse' if base.sparse else 'dense reference'} path")
        preamble = header(f"hiermae ablations on {backbone} (CPU)", command, machine, timing, lines)
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
    main = [r for r in results if r.variant.group != "budget"]
    title = "ViT, Swin, ConvNeXt and ResNet pretrained by hiermae, each with its family's recipe (CPU)"
    if not settings.family_recipes:
        title = "ViT, Swin, ConvNeXt and ResNet under one masked-pretraining recipe (CPU)"
    preamble = header(title, command, machine, timing, lines)
    text = comparison_report(main, random_init, measurements, protocols, folder, preamble, recipes, random_curves)
    curve = [r for r in results if r.variant.group == "budget"]
    if curve:
        backbone = curve[0].variant.pretraining.backbone
        points = [(r.variant.minutes, r) for r in curve]
        points += [(settings.minutes, r) for r in main if r.variant.pretraining.backbone == backbone]
        text += budget_curve_section(backbone, sorted(points, key=lambda p: p[0]), random_init[backbone], folder)
    return text


def reading_section(folder: Path) -> str:
    """The hand-written reading of the results, kept in `<report folder>/reading.md` so regenerating the report
    keeps it."""
    path = folder / "reading.md"
    if path.exists():
        return "\n## Reading (written by hand)\n\n" + path.read_text().strip() + "\n"
    return f"\n## Reading (written by hand)\n\nNot written yet: put it in `{path}`; the report includes it.\n"


def chunk_section(ledger: Ledger) -> str:
    """The chunks (sessions) that produced the ledger: start, minutes, chains finished, load average at the end."""
    sessions = ledger.sessions()
    lines = ["", "## Machine time by chunk", "",
             "| chunk | started (UTC) | minutes | chains finished | load average at the end (1, 5, 15 min) | commit |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for number, session in enumerate(sessions, 1):
        loads = ", ".join(f"{x:.1f}" for x in session["load_average_at_end"])
        lines.append(f"| {number} | {session['started']} | {session['minutes']:.1f} | {session['chains_finished']} "
                     f"| {loads} | `{session['commit']}` |")  # fmt: skip
    total = sum(session["minutes"] for session in sessions)
    plural = "" if len(sessions) == 1 else "s"
    lines += ["", f"Total: **{total:.1f} min** of machine time in {len(sessions)} chunk{plural}.", ""]
    return "\n".join(lines)


def run_recipes(variants: list[Variant], seed: int) -> dict[str, RecipeSummary]:
    """Each variant's recipe (by label) as its generated config for `seed` sets it: built from the settings, not
    read from the run folder, so a report from the ledger alone shows the same rows as one beside the runs."""
    summaries = {}
    with tempfile.TemporaryDirectory() as folder:
        for number, variant in enumerate(variants):
            config = Path(folder) / f"variant{number}.py"
            config.write_text(variant.pretraining.config_text(seed))
            summaries[variant.label] = summarize(config, variant.pretraining.recipe)
    return summaries


def default_label(settings: Settings, backbone: str) -> str | None:
    """The sweep label of the variant that matches `backbone`'s recipe as committed (its mask ratio, lr × 1), or
    None when the grid does not contain the recipe's mask ratio."""
    ratio = float(recipe_config(family_recipe(backbone)).model.mask.mask_ratio)
    matches = [v.label for v in settings.variants() if v.group == backbone and v.pretraining.lr_scale == 1.0
               and v.pretraining.mask_ratio == ratio]  # fmt: skip
    return matches[0] if matches else None
