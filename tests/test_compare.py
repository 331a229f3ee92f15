"""tools/compare.py and its harness (experiments/): plans, configs, resumable steps, settings guard, report, claims."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from mmengine.config import Config

from experiments import comparison, plan
from experiments.claims import verdict
from experiments.comparison import (
    Settings,
    SettingsMismatchError,
    check_settings,
    write_report,
)
from experiments.ledger import Ledger
from experiments.plan import Pretraining, ablation_plan, comparison_plan, family_recipe, sweep_plan
from experiments.recipes import summarize
from experiments.results import Spread, random_init_tag
from experiments.runs import (
    Evaluation,
    Step,
    StepError,
    budget_iters,
    calibration_path,
    evaluation_path,
    measurement_path,
    pretraining_path,
    run_chains,
    run_step,
    run_steps,
    training_log,
)
from hiermae.backbones import encoder_family
from hiermae.downstream.finetune import FineTuneRecipe
from hiermae.utils.atomic_files import write_json

from comparison_settings import family_settings

ROOT = Path(__file__).resolve().parents[1]


def test_generated_config_holds_the_setting_and_seed(tmp_path):
    setting = Pretraining("convnext_atto", sparse=False, mask_ratio=0.6, target="hog", decoder="linear", iters=30)
    path = tmp_path / "config.py"
    path.write_text(setting.config_text(seed=3))
    cfg = Config.fromfile(path)
    assert cfg.model.backbone == "convnext_atto" and cfg.model.sparse is False
    assert cfg.model.mask == dict(type="random", mask_ratio=0.6) and cfg.model.target.type == "hog"
    assert dict(cfg.model.decoder) == {"type": "linear"}  # the base's UNet width is dropped, not merged
    assert cfg.model.mask_seed == 3 and cfg.randomness.seed == 3
    assert cfg.train_cfg.max_iters == 30 and cfg.param_scheduler[1].end == 30
    assert cfg.train_dataloader.dataset.image_size == cfg.model.input_size == 96


def test_names_change_with_every_setting():
    base = Pretraining("resnet18")
    fields = dict(sparse=False, mask_ratio=0.6, target="hog", decoder="linear", input_size=64, iters=10, batch_size=8,
                  recipe=family_recipe("resnet18"), lr_scale=0.5)  # fmt: skip
    names = {base.name} | {Pretraining("resnet18", **{k: v}).name for k, v in fields.items()}
    assert len(names) == len(fields) + 1


def test_ablation_plan_covers_each_axis_once_with_one_baseline():
    base = Pretraining("convnext_atto")
    variants = ablation_plan(["mask_ratio", "target", "sparse", "decoder"], base)
    labels = [v.label for v in variants]
    assert labels[0] == "baseline" and variants[0].pretraining == base
    assert len({v.pretraining for v in variants}) == len(variants) == 1 + 3 + 2 + 1 + 2
    assert "mask_ratio=0.9" in labels and "sparse=False" in labels and "decoder=linear" in labels
    with pytest.raises(ValueError, match="unknown ablations \\['depth'\\]"):
        ablation_plan(["depth"], base)
    assert [v.label for v in comparison_plan(["resnet18", "vit_tiny_patch16_224"], base)] == [
        "resnet18",
        "vit_tiny_patch16_224",
    ]


def test_a_done_step_is_skipped_and_a_failed_one_names_its_log(tmp_path):
    marker = tmp_path / "ran"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"]
    done = Step("done", command, tmp_path / "done.json", tmp_path / "done.log")
    write_json(done.result, {})
    assert run_step(done, threads=1) == 0.0 and not marker.exists()
    collected = Step("collected", command, tmp_path / "c.json", tmp_path / "c.log", collect=lambda: {"ok": 1})
    run_steps([collected], jobs=1)
    assert marker.read_text() == "x" and json.loads(collected.result.read_text()) == {"ok": 1}
    failing = Step("broken", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "b.json", tmp_path / "b.log")
    with pytest.raises(StepError, match=r"step broken failed \(exit 3\); see .*b\.log"):
        run_step(failing, threads=1)
    assert not failing.result.exists()


def settings(**changes) -> Settings:
    base = Pretraining("resnet18", iters=4, batch_size=2, input_size=64)
    values = dict(backbones=("resnet18",), seeds=(0, 1), base=base, evaluation=Evaluation(), ablate=())
    values.update(changes)
    return Settings(**values)


def test_a_run_folder_refuses_other_settings(tmp_path):
    check_settings(tmp_path, settings())
    check_settings(tmp_path, settings())  # same settings: resumes
    with pytest.raises(SettingsMismatchError, match=r"different settings \(seeds\)"):
        check_settings(tmp_path, settings(seeds=(0, 1, 2)))


@pytest.mark.parametrize(
    ("better", "worse", "expected"),
    [
        ((0.80, 0.81, 0.82), (0.70, 0.71, 0.72), "reproduced"),
        ((0.75, 0.70, 0.80), (0.74, 0.70, 0.78), "same direction, within seed noise"),
        ((0.60, 0.61, 0.62), (0.70, 0.71, 0.72), "not reproduced (opposite, beyond seed noise)"),
        ((0.70,), (), "not measured"),
        ((0.70,), (0.60,), "same direction, one seed only (no spread to judge)"),
        ((0.70, 0.70), (0.70, 0.70), "not reproduced (tie)"),
    ],
)
def test_verdict_weighs_the_difference_against_the_seed_spread(better, worse, expected):
    assert verdict(Spread(better), Spread(worse)) == expected


def test_one_seed_shows_its_value_without_a_spread_it_does_not_have():
    assert Spread((0.705,)).text() == "70.5" and Spread((0.70, 0.71)).text() == "70.5 ± 0.7"
    assert Spread(()).text() == "–"


def fake_results(run: Path, config: Settings, accuracy: dict[str, float], gain: float) -> None:
    """Result files as the steps write them, with pretrained accuracy `gain` above random init."""
    base = config.base
    for variant in config.variants():
        for seed in config.seeds:
            losses = [[i, 1.0 / i] for i in range(1, 5)]
            seconds = [[i, 2.0 * i] for i in range(1, 5)]
            write_json(pretraining_path(run, variant.pretraining, seed),
                       {"losses": losses, "seconds": seconds, "checkpoint": "x.pth"})  # fmt: skip
            scores = {p: a + gain + seed / 100 for p, a in accuracy.items()}
            write_json(evaluation_path(run, variant.pretraining.name, seed), scores)
        name = variant.pretraining.backbone
        for seed in config.seeds:
            write_json(evaluation_path(run, random_init_tag(name, base.input_size), seed), accuracy)
        for sparse in (True, False):
            figures = dict(encoder_parameters=11e6, decoder_parameters=2e6, dense_inference_flops=4e8,
                           encoder_flops=1e8 if sparse else 4e8, decoder_flops=5e7,
                           images_per_second=40.0 if sparse else 10.0, peak_mib=100.0 if sparse else 300.0,
                           images_per_cpu_second=30.0 if sparse else 10.0, load_average=1.5,
                           step_seconds=[0.7, 0.8, 1.0] if sparse else [3.0, 3.2, 3.2, 3.3])  # fmt: skip
            write_json(measurement_path(run, name, sparse, **comparison.measured_setting(config, name)), figures)


def ledger_of(tmp_path: Path, minutes: float = 12.0) -> Ledger:
    """A ledger with one chunk of `minutes`."""
    ledger = Ledger(tmp_path / "ledger")
    ledger.record_session(comparison.datetime.datetime(2026, 12, 4), minutes * 60, 1)
    return ledger


def test_comparison_report_tables_and_plots(tmp_path):
    config = settings(evaluation=Evaluation(protocols=("knn", "linear")))
    fake_results(tmp_path / "run", config, {"knn": 0.5, "linear": 0.6}, gain=0.1)
    report = write_report(
        tmp_path / "run", config, tmp_path / "out" / "report.md", "python tools/compare.py", ledger_of(tmp_path)
    )
    text = report.read_text()
    assert "python tools/compare.py" in text and "Machine time: **12.0 min** in 1 chunk" in text
    assert "| resnet18 | 11.0 | 0.40 | 0.10 + 0.05 | 0.25 | 0.45 | 40.0 | 10.0 | 4.00× | 3.00× | 100 | 300 |" in text
    assert "median of 3 timed steps; within one measurement a step was up to 25% away from its median" in text
    assert "| resnet18 | random | 50.0 ± 0.0 | 60.0 ± 0.0 |" in text
    assert "| resnet18 | hiermae | 60.5 ± 0.7 | 70.5 ± 0.7 |" in text
    assert "| resnet18 | gain | +10.5 (beyond noise) | +10.5 (beyond noise) |" in text
    assert "| resnet18 | 4 | 8 | 0.1 ± 0.0 | 0.250 ± 0.000 |" in text  # budget: iterations, images, minutes, loss
    assert "Linear probe beyond noise above random init for 1 of 1 backbones (resnet18)" in text
    for name in ("loss_curves", "loss_vs_time", "accuracy", "accuracy_vs_flops", "throughput_vs_flops"):
        assert (tmp_path / "out" / "report" / f"{name}.png").stat().st_size > 1000
        assert f"![{name}](report/{name}.png)" in text


def test_ablation_report_checks_claims_against_the_baseline(tmp_path):
    config = settings(ablate=("sparse",), evaluation=Evaluation(protocols=("linear",)))
    run = tmp_path / "run"
    fake_results(run, config, {"linear": 0.6}, gain=0.1)
    dense = next(v for v in config.variants() if v.label == "sparse=False")
    for seed in config.seeds:
        write_json(evaluation_path(run, dense.pretraining.name, seed), {"linear": 0.5})
    text = write_report(
        run, config, tmp_path / "ablation.md", "python tools/compare.py --ablate sparse", ledger_of(tmp_path)
    ).read_text()
    assert "| sparse=True (baseline) | 0.250 ± 0.000 | 70.5 ± 0.7 |" in text
    assert "| sparse=False | 0.250 ± 0.000 | 50.0 ± 0.0 |" in text
    assert "| sparse pretraining of a CNN beats the dense masked reference |" in text
    assert text.count("| reproduced |") == 1


def test_a_backbone_whose_family_has_no_recipe_is_named(monkeypatch):
    monkeypatch.delitem(plan.FAMILY_RECIPES, "resnet")
    with pytest.raises(ValueError, match=r"no comparison recipe for 'resnet18' \(family resnet\); families with one"):
        family_recipe("resnet18")


def test_cli_rejects_an_unknown_backbone_before_any_work(tmp_path):
    result = subprocess.run(
        [sys.executable, "tools/compare.py", "--out", str(tmp_path / "run"), "--backbones", "alexnet"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and "unsupported backbone 'alexnet'" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_compare_end_to_end_then_resumes_without_rework(tmp_path):
    command = [
        sys.executable, "tools/compare.py", "--out", str(tmp_path / "run"), "--report", str(tmp_path / "r.md"),
        "--backbones", "convnext_atto", "--seeds", "0", "1", "--minutes", "0.1", "--batch-size", "4",
        "--input-size", "64", "--protocols", "knn", "linear", "finetune", "--labelled", "30", "--test-limit", "32",
        "--linear-epochs", "1", "--finetune-epochs", "1", "--jobs", "2",
    ]  # fmt: skip
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    text = (tmp_path / "r.md").read_text()
    assert "| convnext_atto | hiermae |" in text and "not measured" not in text and "**0.1 min of training" in text
    assert "| convnext_atto | random | 1 |" in text  # the fine-tuning convergence table
    calibrated = json.loads(next((tmp_path / "run" / "calibrate").glob("*/calibration.json")).read_text())
    assert calibrated["seconds_per_iter"] > 0
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 of 4 chains to run" in again.stdout and "done pretrain" not in again.stdout
    assert len(list((tmp_path / "r" / "runs" / "chains").glob("*/seed*.json"))) == 4  # the ledger beside the report


def test_a_chain_runs_in_order_and_a_failure_stops_the_rest_of_its_chain(tmp_path):
    log = tmp_path / "order"
    write = [sys.executable, "-c", f"import sys; open({str(log)!r}, 'a').write(sys.argv[1])"]
    first = Step("first", [*write, "a"], tmp_path / "a.json", tmp_path / "a.log", collect=dict)
    second = Step("second", [*write, "b"], tmp_path / "b.json", tmp_path / "b.log", collect=dict)
    run_chains([[first, second]], jobs=2)
    assert log.read_text() == "ab"
    broken = Step("broken", [sys.executable, "-c", "raise SystemExit(1)"], tmp_path / "x.json", tmp_path / "x.log")
    after = Step("after", [*write, "c"], tmp_path / "c.json", tmp_path / "c.log", collect=dict)
    with pytest.raises(StepError, match="step broken failed"):
        run_chains([[broken, after]], jobs=1)
    assert log.read_text() == "ab" and not after.result.exists()


FAMILY_MASK_RATIOS = [("resnet18", 0.6), ("convnext_atto", 0.6), ("swin_tiny_patch4_window7_224", 0.6),
                      ("vit_tiny_patch16_224", 0.75)]  # fmt: skip


@pytest.mark.parametrize(("backbone", "ratio"), FAMILY_MASK_RATIOS)
def test_each_family_starts_from_its_recipe_and_overrides_only_what_it_names(tmp_path, backbone, ratio):
    recipe = Config.fromfile(ROOT / family_recipe(backbone))
    assert recipe.model.backbone == backbone and recipe.model.mask.mask_ratio == ratio  # SparK/SimMIM 0.6, MAE 0.75
    assert recipe.auto_scale_lr == dict(base_batch_size=256, enable=True)
    setting = Pretraining(
        backbone, mask_ratio=None, target=None, decoder=None, iters=40, recipe=family_recipe(backbone)
    )
    path = tmp_path / "config.py"
    path.write_text(setting.config_text(seed=2))
    summary = summarize(path, setting.recipe)
    assert summary.mask_ratio == ratio and summary.iters == 40 and summary.warmup_iters == 4
    base_lr = recipe.optim_wrapper.optimizer.lr  # per 256 images; Swin's recipe sets its own (the sweep's choice)
    assert summary.lr == pytest.approx(base_lr * 32 / 256) and summary.base_lr == pytest.approx(base_lr)
    assert summary.decoder.startswith(recipe.model.decoder.type) and summary.target == "norm_pixels"
    halved = replace(setting, mask_ratio=0.9, lr_scale=0.5, decoder="linear")
    path.write_text(halved.config_text(seed=2))
    changed = summarize(path, halved.recipe)
    assert changed.mask_ratio == 0.9 and changed.lr == pytest.approx(summary.lr / 2) and changed.decoder == "linear"
    assert changed.weight_decay == summary.weight_decay and changed.betas == summary.betas


def test_sweep_plan_tries_each_disputed_value_once_from_each_recipe():
    variants = sweep_plan(["resnet18", "vit_tiny_patch16_224"], Pretraining("resnet18", mask_ratio=None))
    assert len(variants) == 6 and [v.group for v in variants] == ["resnet18"] * 3 + ["vit_tiny_patch16_224"] * 3
    points = [(v.pretraining.mask_ratio, v.pretraining.lr_scale) for v in variants]
    assert points == [(0.6, 1.0), (0.75, 1.0), (0.6, 0.25), (0.75, 1.0), (0.6, 1.0), (0.75, 0.25)]  # recipe first
    assert variants[4].pretraining.recipe == family_recipe("vit_tiny_patch16_224")
    assert len({v.pretraining.name for v in variants}) == 6


def test_training_log_adds_each_interval_and_a_calibration_sets_the_budget(tmp_path):
    session = tmp_path / "20260101_000000" / "vis_data"
    session.mkdir(parents=True)
    records = [{"iter": 5, "loss": 1.0, "time": 0.2}, {"iter": 10, "loss": 0.8, "time": 0.4}, {"iter": 12, "lr": 1}]
    (session / "scalars.json").write_text("\n".join(json.dumps(r) for r in records))
    assert training_log(tmp_path) == [(5, 1.0, pytest.approx(1.0)), (10, 0.8, pytest.approx(3.0))]
    setting = Pretraining("resnet18")
    assert budget_iters(tmp_path, setting, minutes=1.0) is None
    write_json(calibration_path(tmp_path, setting), {"seconds_per_iter": 0.25})
    assert budget_iters(tmp_path, setting, minutes=1.0) == 240
    assert budget_iters(tmp_path, replace(setting, iters=999), minutes=1.0) == 240  # the budget, not the iters


def test_evaluation_settings_travel_as_json():
    evaluation = Evaluation(protocols=("linear", "finetune"), labelled=500, evaluate_on="validation")
    assert Evaluation.from_json(evaluation.to_json()) == evaluation


def test_equal_time_report_shows_recipes_budget_goals_and_finetuning_curves(tmp_path):
    config, run = family_settings(), tmp_path / "run"
    (variant,) = config.variants()
    write_json(calibration_path(run, variant.pretraining), {"seconds_per_iter": 1.5})
    (budgeted_variant,) = comparison.budgeted(run, config)
    assert budgeted_variant.pretraining.iters == 20  # 30 s / 1.5 s
    scores = {"knn": 0.6, "linear": 0.62, "finetune": 0.75}
    fake_results(run, replace(config, minutes=None, base=budgeted_variant.pretraining), scores, gain=0.05)
    for seed in config.seeds:
        folder = pretraining_path(run, budgeted_variant.pretraining, seed).parent
        (folder / "config.py").write_text(budgeted_variant.pretraining.config_text(seed))
        for tag, start in ((budgeted_variant.pretraining.name, 1.0), (random_init_tag("resnet18", 64), 1.5)):
            curve = [{"epoch": e, "loss": start / e, "lr": 0.1, "seconds": e} for e in range(1, 9)]
            write_json(evaluation_path(run, tag, seed).parent / "finetune" / "curve.json", curve)
    text = write_report(
        run, config, tmp_path / "r.md", "python tools/compare.py --minutes 0.5", ledger_of(tmp_path)
    ).read_text()
    assert "**0.5 min of training per run**" in text and "a fixed stratified 1000 training images" in text
    assert "| resnet18 | 0.6 | 9.38e-05 (1.20e-02 × 2/256) | 0.04 | (0.9, 0.95) | 2 of 20 | unet (width 256) |" in text
    assert "| resnet18 | gain | +5.5 (beyond noise) | +5.5 (beyond noise) | +5.5 (beyond noise) |" in text
    assert (
        "random-init fine-tuning 75.0 % (meets the 70 % sanity bar); fine-tuning gain +5.5 points (beyond noise)"
        in text
    )
    assert "| resnet18 | random | 8 | 0.188 ± 0.000 | -25.0 ± 0.0 % |" in text  # 1.5/8 against 1.5/6 at epoch 6
    assert (tmp_path / "r" / "finetune_curves.png").stat().st_size > 1000


def test_sweep_report_lists_every_seed_and_weighs_the_best_against_the_recipe(tmp_path):
    config = family_settings(sweep=True, minutes=None, evaluation=Evaluation(protocols=("linear",)))
    run = tmp_path / "run"
    for index, variant in enumerate(config.variants()):
        for seed in config.seeds:
            write_json(pretraining_path(run, variant.pretraining, seed), {"losses": [[1, 0.5]], "checkpoint": "x"})
            write_json(
                evaluation_path(run, variant.pretraining.name, seed), {"linear": 0.6 + 0.05 * index + seed / 100}
            )
    command = "python tools/compare.py --sweep"
    text = write_report(run, config, tmp_path / "sweep.md", command, ledger_of(tmp_path)).read_text()
    assert "| mask_ratio=0.6, lr×1 (recipe) | 4 | 0.500 ± 0.000 | 60.0, 61.0 (60.5 ± 0.7) |" in text
    assert "Selection metric: linear probe top-1 on the test split." in text  # as configured here
    assert "**mask_ratio=0.6, lr×0.25** leads the recipe's default by +10.0 points (beyond noise)" in text


def test_a_family_whose_fine_tuning_ends_below_its_probe_is_ranked_by_the_probe(tmp_path):
    config = family_settings(sweep=True, minutes=None, evaluation=Evaluation(protocols=("linear", "finetune")))
    run = tmp_path / "run"
    for index, variant in enumerate(config.variants()):  # the recipe fine-tunes best; the last probes best
        scores = {"linear": 0.6 + 0.05 * index, "finetune": 0.5 - 0.05 * index}
        for seed in config.seeds:
            write_json(pretraining_path(run, variant.pretraining, seed), {"losses": [[1, 0.5]], "checkpoint": "x"})
            write_json(evaluation_path(run, variant.pretraining.name, seed), scores)
    text = write_report(run, config, tmp_path / "sweep.md", "python tools/compare.py --sweep", ledger_of(tmp_path))
    text = text.read_text()
    assert "Fine-tuning ended below the linear probe of the same weights for 3 of 3 variants" in text
    assert "Best by linear probe: **mask_ratio=0.6, lr×0.25** leads the recipe's default by +10.0 points" in text
    assert "Best by fine-tune" not in text


@pytest.mark.parametrize(("fact", "changed"), [("finetune_base_lr", 2e-2), ("finetune_layer_decay", 0.7)])
def test_the_ledger_records_each_familys_fine_tuning_facts_and_refuses_a_change(tmp_path, monkeypatch, fact, changed):
    settings = family_settings()
    assert settings.as_dict()["finetune_by_backbone"] == {"resnet18": {"head_base_lr": 1e-2, "layer_decay": 0.8}}
    check_settings(tmp_path, settings)  # the first start records the settings
    monkeypatch.setattr(encoder_family("resnet18"), fact, changed)
    with pytest.raises(SettingsMismatchError, match=r"different settings \(finetune_by_backbone\)"):
        check_settings(tmp_path, settings)
    finetune = replace(settings.evaluation.finetune, base_lr=5e-3, layer_decay=0.9)  # the same for every family
    one_protocol = replace(settings, evaluation=replace(settings.evaluation, finetune=finetune))
    assert "finetune_by_backbone" not in one_protocol.as_dict()


def test_the_report_states_the_fine_tuning_augmentation_and_lp_ft() -> None:
    text = comparison.evaluation_description(Evaluation(), ["resnet18"])
    assert "whole images (no random crops) and flips" in text and "starting as a linear probe" in text
    before = Evaluation(finetune=FineTuneRecipe(crop_scale=(0.35, 1.0), drop_path=0.1, probe_head=False))
    text = comparison.evaluation_description(before, ["resnet18"])  # the closed sweep's protocol, worded as it was
    assert "drop path 0.1, random-resized crops (0.35–1 of the area) and flips, batch 64" in text
    assert "LP-FT" not in text
