"""The comparison's ledger: a small result file per finished chain, kept in the repository beside the report, so a
comparison can run in pieces (chunks) across sessions and its report can be rebuilt without the run folder.

Layout of a ledger folder (`docs/results/<report>/runs/`, see `ledger_folder`):

- `settings.json`: the settings and recipe digests the ledger was started with; other settings are refused;
- `sessions.json`: one entry per chunk (session): start, minutes, chains finished, load average, commit, machine;
- `calibration/<setting>.json` and `measure/<figures>.json`: the calibrations (seconds per pretraining iteration)
  and the cost measurements, which fix every later chunk's iteration budgets and the cost table;
- `chains/<tag>/seed<N>.json`: one finished chain (a pretraining run and its evaluation, or the evaluation of random
  init): metrics, fine-tuning curve, pretraining loss and time curves, wall seconds per step, the settings and
  recipe digests, the commit and the machine.

Checkpoints never enter the ledger. A chain lands only when all its steps have finished, so a chain that was cut off
is simply run again by the next chunk. `restore` writes the run-folder files that the ledger stands for, so the
step runner skips every chain already in the ledger and the report reads one kind of folder.
"""

import datetime
import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from experiments.plan import ROOT, Pretraining
from experiments.recipes import digest
from experiments.runs import (
    calibration_path,
    evaluation_path,
    pretraining_path,
    read_json,
    write_json,
)


def ledger_folder(report: Path) -> Path:
    """Where the ledger of `report` lives: `runs/` inside the report's plot folder."""
    return report.with_suffix("") / "runs"


def machine_description() -> str:
    cpus = len(os.sched_getaffinity(0))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "CPU"
    return f"{platform.machine()}, {cpus} CPU cores, {device}, torch {torch.__version__}"


def commit() -> str:
    """The checkout's commit (with `-dirty` when tracked files differ from it), or 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=ROOT).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Chain:
    """One chain of a comparison: `pretraining` with `seed` then the evaluation of its encoder (`tag` is the
    setting's name), or (`pretraining=None`) the evaluation of random init of `backbone` (`tag`: its random tag)."""

    tag: str
    seed: int
    backbone: str
    pretraining: Pretraining | None


class Ledger:
    """The ledger folder of one report."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def chain_path(self, chain: Chain) -> Path:
        return self.folder / "chains" / chain.tag / f"seed{chain.seed}.json"

    def has(self, chain: Chain) -> bool:
        return self.chain_path(chain).exists()

    def chains(self) -> list[dict]:
        """Every recorded chain, in a stable order."""
        return [read_json(path) for path in sorted((self.folder / "chains").glob("*/seed*.json"))]

    def sessions(self) -> list[dict]:
        path = self.folder / "sessions.json"
        return read_json(path) if path.exists() else []

    def record_chain(self, run: Path, chain: Chain, settings: dict, seconds: dict[str, float | None]) -> None:
        """Write the ledger entry of `chain`, finished in run folder `run` (`seconds`: wall seconds per step, None
        for a step finished by an earlier session)."""
        evaluation = evaluation_path(run, chain.tag, chain.seed)
        curve = evaluation.parent / "finetune" / "curve.json"
        entry = {
            "tag": chain.tag,
            "seed": chain.seed,
            "backbone": chain.backbone,
            "pretraining": None if chain.pretraining is None else chain.pretraining.as_dict(),
            "metrics": read_json(evaluation),
            "finetune_curve": read_json(curve) if curve.exists() else None,
            "wall_seconds": seconds,
            "settings_digest": settings_digest(settings),
            "recipe_digest": None if chain.pretraining is None else digest(chain.pretraining.recipe),
            "commit": commit(),
            "machine": machine_description(),
            "load_average": list(os.getloadavg()),
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        if chain.pretraining is not None:
            recorded = read_json(pretraining_path(run, chain.pretraining, chain.seed))
            entry["pretraining_curves"] = {key: recorded[key] for key in ("losses", "seconds") if key in recorded}
        write_json(self.chain_path(chain), entry)

    def record_files(self, run: Path) -> None:
        """Copy the run's calibrations and cost measurements into the ledger (those not there yet)."""
        for source in [*run.glob("calibrate/*/calibration.json"), *run.glob("measure/*.json")]:
            kind = "calibration" if source.name == "calibration.json" else "measure"
            name = f"{source.parent.name}.json" if kind == "calibration" else source.name
            target = self.folder / kind / name
            if not target.exists():
                write_json(target, read_json(source))

    def restore(self, run: Path, chains: list[Chain]) -> None:
        """Write into `run` the result files of everything the ledger holds (calibrations, measurements, and each of
        `chains` it has), where they are missing, so that those steps count as done and the report reads them."""
        for source in (self.folder / "calibration").glob("*.json"):
            target = run / "calibrate" / source.stem / "calibration.json"
            if not target.exists():
                write_json(target, read_json(source))
        for source in (self.folder / "measure").glob("*.json"):
            if not (run / "measure" / source.name).exists():
                write_json(run / "measure" / source.name, read_json(source))
        for chain in chains:
            if self.has(chain):
                restore_chain(run, chain, read_json(self.chain_path(chain)))

    def record_session(self, started: datetime.datetime, seconds: float, chains_finished: int) -> list[dict]:
        """Add this chunk's wall time to `sessions.json`; returns every chunk so far."""
        sessions = self.sessions()
        sessions.append({
            "started": started.isoformat(timespec="seconds"), "minutes": round(seconds / 60, 2),
            "chains_finished": chains_finished, "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "commit": commit(), "machine": machine_description(),
        })  # fmt: skip
        write_json(self.folder / "sessions.json", sessions)
        return sessions


def restore_chain(run: Path, chain: Chain, entry: dict) -> None:
    """The run-folder result files of one ledger entry (the checkpoint stays absent: nothing reads it again)."""
    evaluation = evaluation_path(run, chain.tag, chain.seed)
    if chain.pretraining is not None:
        result = pretraining_path(run, chain.pretraining, chain.seed)
        if not result.exists():
            write_json(result, {**entry["pretraining_curves"], "checkpoint": "(not kept: restored from the ledger)"})
    if not evaluation.exists():
        if entry.get("finetune_curve") is not None:
            write_json(evaluation.parent / "finetune" / "curve.json", entry["finetune_curve"])
        write_json(evaluation, entry["metrics"])


def calibration_file(ledger: Ledger, pretraining: Pretraining) -> Path:
    """Where the ledger keeps the calibration of `pretraining` (the run folder's, by its folder name)."""
    return ledger.folder / "calibration" / f"{calibration_path(Path('.'), pretraining).parent.name}.json"
