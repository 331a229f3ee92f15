"""The comparison's ledger (experiments/ledger.py): chains recorded as they finish, never rerun, the report rebuilt
from the ledger alone; the chain estimates behind --plan and --stop-after; the GPU script's CPU dry run."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from mmengine.config import Config

from experiments import comparison
from experiments.comparison import (
    Settings,
    SettingsMismatchError,
    budgeted,
    chain_steps,
    open_ledger,
    plan_backbones,
    plan_chains,
    report_from_ledger,
    run_comparison,
    write_report,
)
from experiments.ledger import Chain, Ledger, ledger_folder
from experiments.results import random_init_tag
from experiments.runs import (
    Evaluation,
    Step,
    calibration_path,
    evaluation_path,
    measurement_path,
    pretraining_path,
    run_chains,
)
from experiments.schedule import STARTUP_SECONDS, estimate, plan_table, rough_evaluation_seconds
from hiermae.utils import write_json

from comparison_settings import family_settings

ROOT = Path(__file__).resolve().parents[1]


def finish_chains(run: Path, settings: Settings, ledger: Ledger, gain: float = 0.05) -> list[Chain]:
    """Write every chain's run-folder results as its steps would (pretraining curves, metrics, fine-tuning curve),
    record each in the ledger with wall times, and return the chains."""
    for variant in settings.variants():
        write_json(calibration_path(run, variant.pretraining), {"seconds_per_iter": 1.5, "times": [1.5]})
    for sparse in (True, False):
        figures = dict(encoder_parameters=11e6, decoder_parameters=2e6, dense_inference_flops=4e8,
                       encoder_flops=1e8, decoder_flops=5e7, images_per_second=40.0, peak_mib=100.0,
                       images_per_cpu_second=30.0, load_average=1.5, step_seconds=[0.7, 0.8])  # fmt: skip
        write_json(measurement_path(run, "resnet18", sparse, **comparison.measured_setting(settings, "resnet18")),
                   figures)  # fmt: skip
    ledger.record_files(run)
    chains = plan_chains(settings, budgeted(run, settings), plan_backbones(settings.variants()))
    for chain in chains:
        random = chain.pretraining is None
        scores = {"knn": 0.6, "linear": 0.62, "finetune": 0.75}
        scores = {key: value + (0 if random else gain + chain.seed / 100) for key, value in scores.items()}
        if not random:
            folder = pretraining_path(run, chain.pretraining, chain.seed).parent
            write_json(folder / "result.json", {"losses": [[5, 1.0], [10, 0.8]], "seconds": [[5, 7.0], [10, 15.0]],
                                                "checkpoint": str(folder / "iter_20.pth")})  # fmt: skip
            (folder / "config.py").write_text(chain.pretraining.config_text(chain.seed))
        curve = [{"epoch": e, "loss": 1.0 / e, "lr": 0.1, "seconds": e} for e in range(1, 9)]
        write_json(evaluation_path(run, chain.tag, chain.seed).parent / "finetune" / "curve.json", curve)
        write_json(evaluation_path(run, chain.tag, chain.seed), scores)
        seconds = {"evaluate": 90.0} if random else {"pretrain": 40.0, "evaluate": 100.0}
        ledger.record_chain(run, chain, settings.as_dict(), seconds)
    return chains


def test_a_finished_chain_lands_with_metrics_curves_timings_digests_commit_and_machine(tmp_path):
    settings, run = family_settings(), tmp_path / "run"
    ledger = open_ledger(run, settings, tmp_path / "docs" / "report.md")
    chains = finish_chains(run, settings, ledger)
    assert ledger.folder == tmp_path / "docs" / "report" / "runs"
    pretrained = json.loads(ledger.chain_path(chains[0]).read_text())
    assert pretrained["metrics"] == {"knn": 0.65, "linear": 0.67, "finetune": 0.8}
    assert pretrained["finetune_curve"][-1]["epoch"] == 8 and pretrained["wall_seconds"]["pretrain"] == 40.0
    assert pretrained["pretraining_curves"]["losses"] == [[5, 1.0], [10, 0.8]]
    assert pretrained["pretraining"]["iters"] == 20 and len(pretrained["recipe_digest"]) == 12
    assert len(pretrained["settings_digest"]) == 12 and pretrained["commit"] and "CPU cores" in pretrained["machine"]
    assert "checkpoint" not in json.dumps(pretrained)  # checkpoints never enter the ledger
    assert {path.parent.name for path in ledger.folder.glob("*/*.json")} == {"calibration", "measure"}


def test_chains_in_the_ledger_are_done_in_a_new_run_folder(tmp_path):
    settings = family_settings()
    ledger = open_ledger(tmp_path / "old", settings, tmp_path / "report.md")
    chains = finish_chains(tmp_path / "old", settings, ledger)
    fresh = tmp_path / "fresh"
    ledger = open_ledger(fresh, settings, tmp_path / "report.md")  # restores the calibrations: same budgets
    assert plan_chains(settings, budgeted(fresh, settings), ["resnet18"]) == chains
    ledger.restore(fresh, chains)
    steps = [chain_steps(fresh, settings, chain) for chain in chains]
    assert all(step.result.exists() for chain in steps for step in chain)
    ran = []
    run_chains(steps, jobs=1, finished=lambda index, seconds: ran.append(index))
    assert ran == []  # nothing reruns


def test_the_ledger_refuses_other_settings_even_from_a_new_run_folder(tmp_path):
    open_ledger(tmp_path / "a", family_settings(), tmp_path / "report.md")
    with pytest.raises(SettingsMismatchError, match=r"different settings \(evaluation\).*choose a new --report"):
        open_ledger(tmp_path / "b", family_settings(evaluation=Evaluation(linear_epochs=50)), tmp_path / "report.md")


def test_report_only_rebuilds_the_committed_report_from_the_ledger_alone(tmp_path, monkeypatch):
    settings = family_settings(budget_curve=(0.25,), budget_backbone="resnet18")
    monkeypatch.chdir(tmp_path)
    report = Path("docs/results/compare.md")
    ledger = open_ledger(Path("run"), settings, report)
    finish_chains(Path("run"), settings, ledger)
    ledger.record_session(comparison.datetime.datetime(2026, 12, 4, 23, 0), 600.0, 9)
    (report.with_suffix("") / "reading.md").write_text("ResNet-18 gains.")
    written = write_report(Path("run"), settings, report, "python tools/compare.py --minutes 0.5", ledger).read_text()
    assert "Machine time: **10.0 min** in 1 chunk" in written and "Partial" not in written
    assert "## Pretraining budget curve: resnet18" in written and "| 0.25 | 10 |" in written
    assert "| 0.5 | 20 |" in written  # the comparison's own budget is the curve's last point
    assert "## Reading (written by hand)\n\nResNet-18 gains." in written
    clone = tmp_path / "clone"  # a fresh clone: the committed report folder (ledger, reading), no run folder
    shutil.copytree(report.with_suffix(""), clone / report.with_suffix(""), ignore=shutil.ignore_patterns("*.png"))
    monkeypatch.chdir(clone)
    rebuilt = report_from_ledger(settings, report, "python tools/compare.py --minutes 0.5", Path("run"))
    assert rebuilt.read_text() == written
    assert (clone / "docs/results/compare/budget_curve.png").stat().st_size > 1000


def test_a_partial_ledger_says_how_many_chains_are_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings, report = family_settings(), Path("r.md")
    ledger = open_ledger(Path("run"), settings, report)
    chains = finish_chains(Path("run"), settings, ledger)
    ledger.chain_path(chains[-1]).unlink()
    text = report_from_ledger(settings, report, "python tools/compare.py", Path("run")).read_text()
    assert f"**Partial report**: {len(chains) - 1} of {len(chains)} chains in the ledger." in text


def test_estimates_come_from_the_calibration_then_from_observed_chains(tmp_path):
    settings, run = family_settings(), tmp_path / "run"
    (variant,) = settings.variants()
    write_json(calibration_path(run, variant.pretraining), {"seconds_per_iter": 1.5})
    (budgeted_variant,) = budgeted(run, settings)
    chain = Chain(budgeted_variant.pretraining.name, 0, "resnet18", budgeted_variant.pretraining)
    random = Chain(random_init_tag("resnet18", 64), 0, "resnet18", None)
    calibrated = {"resnet18": variant.pretraining}
    rough = estimate(chain, run, settings.evaluation, calibrated, [])
    assert rough.pretrain == pytest.approx(20 * 1.5 + STARTUP_SECONDS) and rough.source == "rough"
    # the fine-tuning epochs over 1000 images, the probes' and the fine-tuned model's passes over 10 000 test images
    passes = settings.evaluation.finetune.epochs * 1000 + 10000 / 3 + 11000 / 3
    assert rough.evaluate == pytest.approx(STARTUP_SECONDS + passes * 1.5 / 2)
    assert rough_evaluation_seconds(Evaluation(protocols=("knn",)), 0.0) == STARTUP_SECONDS
    observed = [{"backbone": "resnet18", "wall_seconds": {"pretrain": 45.0, "evaluate": s},
                 "pretraining_curves": {"seconds": [[20, 30.0]]}} for s in (100.0, 300.0, 120.0)]  # fmt: skip
    seen = estimate(random, run, settings.evaluation, calibrated, observed)
    assert (seen.pretrain, seen.evaluate, seen.source) == (0.0, 120.0, "observed")
    assert estimate(chain, run, settings.evaluation, calibrated, observed).pretrain == pytest.approx(30 + 15)
    assert estimate(chain, run, settings.evaluation, {}, []) is None  # not calibrated
    other_lr = replace(chain.pretraining, lr_scale=0.25)  # the lr does not change an iteration's cost
    assert calibration_path(run, other_lr) == calibration_path(run, variant.pretraining)
    table = plan_table([(chain, rough, False), (random, seen, True), (random, None, False)], jobs=2)
    assert "done (in the ledger)" in table and "not calibrated" in table
    assert f"total: 3 chains, 2 to run: {rough.seconds / 60:.0f} chain-minutes" in table
    assert "(+ 1 chains without an estimate)" in table


def test_a_chain_refused_by_the_deadline_does_not_run(tmp_path):
    log = tmp_path / "order"
    write = [sys.executable, "-c", f"import sys; open({str(log)!r}, 'a').write(sys.argv[1])"]
    chains = [[Step(name, [*write, name], tmp_path / f"{name}.json", tmp_path / f"{name}.log", collect=dict)]
              for name in "abc"]  # fmt: skip
    finished = []
    run_chains(chains, jobs=1, may_start=lambda index: index != 1, finished=lambda i, s: finished.append((i, len(s))))
    assert log.read_text() == "ac" and finished == [(0, 1), (2, 1)]
    assert not (tmp_path / "b.json").exists()


def test_stop_after_starts_no_chain_its_estimate_says_cannot_finish(tmp_path, capsys):
    settings, report = family_settings(), tmp_path / "report.md"
    ledger = open_ledger(tmp_path / "old", settings, report)
    chains = finish_chains(tmp_path / "old", settings, ledger)
    ledger.chain_path(chains[0]).unlink()  # cut off: the next chunk must run it again, if time allows
    run_comparison(tmp_path / "new", settings, jobs=1, report=report, command="python tools/compare.py",
                   stop_after=1.0)  # fmt: skip
    out = capsys.readouterr().out
    assert "1 of 4 chains to run" in out
    assert f"not started: {chains[0].tag} seed 0 needs ~2.4 min" in out  # 20 × 1.5 + 25 start-up + 90 s (median)
    assert not pretraining_path(tmp_path / "new", chains[0].pretraining, 0).exists()
    assert ledger.sessions()[-1]["chains_finished"] == 0
    assert "**Partial report**: 3 of 4 chains in the ledger." in report.read_text()


def test_compare_cli_checks_the_session_options():
    spec = importlib.util.spec_from_file_location("compare_tool", ROOT / "tools" / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    assert compare.without_session_options(["--seeds", "0", "--stop-after", "90", "--report-only", "--plan"]) == [
        "--seeds", "0"]  # fmt: skip
    with pytest.raises(SystemExit, match="--budget-curve adds wall-time budgets"):
        compare.settings_from(compare.parse_args(["--budget-curve", "5"]))


@pytest.mark.slow
def test_gpu_script_dry_run_on_the_cpu_writes_a_ledger_a_rerun_reuses(tmp_path):
    report = tmp_path / "compare-gpu.md"
    command = ["bash", "experiments/gpu_compare.sh", "--device", "cpu", "--tiny", "--report", str(report),
               "--out", str(tmp_path / "run")]  # fmt: skip
    env = dict(os.environ, OUT=str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    ledger = ledger_folder(report)
    assert len(list(ledger.glob("chains/*/seed0.json"))) == 2  # resnet18 pretrained, and random init
    assert "| resnet18 | hiermae |" in report.read_text() and (tmp_path / "out" / "compare-gpu.tar.gz").exists()
    shutil.rmtree(tmp_path / "run")  # a new session: no run folder, only the ledger
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "0 of 2 chains to run" in again.stdout and "done pretrain" not in again.stdout


def test_report_only_matches_a_partial_run_whose_configs_mmengine_rewrote(tmp_path, monkeypatch):
    settings = family_settings(budget_curve=(0.25,), budget_backbone="resnet18")
    monkeypatch.chdir(tmp_path)
    report = Path("docs/results/compare.md")
    ledger = open_ledger(Path("run"), settings, report)
    chains = finish_chains(Path("run"), settings, ledger)
    shortest = min(chain.pretraining.iters for chain in chains if chain.pretraining is not None)
    for chain in chains:  # the budget curve's chains not run yet: only their planned configs are in the run folder
        if chain.pretraining is not None and chain.pretraining.iters == shortest:
            ledger.chain_path(chain).unlink()
            pretraining_path(Path("run"), chain.pretraining, chain.seed).unlink()
            shutil.rmtree(evaluation_path(Path("run"), chain.tag, chain.seed).parent)
    for config in Path("run").rglob("config.py"):  # as tools/train.py leaves it: merged, keys re-dumped sorted
        Config.fromfile(config).dump(config)
    written = write_report(Path("run"), settings, report, "python tools/compare.py", ledger).read_text()
    clone = tmp_path / "clone"
    shutil.copytree(report.with_suffix(""), clone / report.with_suffix(""), ignore=shutil.ignore_patterns("*.png"))
    monkeypatch.chdir(clone)
    assert report_from_ledger(settings, report, "python tools/compare.py", Path("run")).read_text() == written
