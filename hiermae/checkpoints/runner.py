"""Checkpoint I/O for mmengine runs: loading as data, atomic writes, and a fit check before resume / load_from.

mmengine 0.10.7's local loader calls `torch.load` with torch's default, which since torch 2.6 refuses the
`HistoryBuffer` mmengine pickles into its own checkpoints, so `resume` and `load_from` failed. hiermae re-registers
the loader for local paths with `hiermae.checkpoints.safe_load.load_checkpoint_file`: weights-only unpickling plus the
few types the runner stores, so resume, `load_from` and a downstream `init_cfg.checkpoint` read data and run no
code; `--trust-checkpoint` switches to full unpickling for files of a trusted origin.

mmengine writes a checkpoint straight into its final path, so a kill during the write leaves a truncated file
under the name `last_checkpoint` is about to point at. hiermae's local backend writes to a temporary file in the
same folder and renames it into place, so every name on disk is a complete file.

mmengine's resume and load_from load weights non-strictly: a checkpoint of another backbone would leave most of the
model at its random initialisation without stopping the run. `check_checkpoint_fits` refuses such a file first,
and a file holding NaN or infinite values (saved by a run that diverged); a resume under other model or data
settings than the checkpoint's is refused by `check_resume_settings` unless the user overrides it.
"""

from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import CheckpointLoader

from hiermae.checkpoints.keys import CheckpointError, compact, key_mismatches, refuse_diverged_checkpoint
from hiermae.checkpoints.literal_config import model_config
from hiermae.checkpoints.resume import checkpoint_to_resume
from hiermae.checkpoints.safe_load import load_checkpoint_file
from hiermae.checkpoints.settings import changed_settings, run_settings, stored_settings
from hiermae.utils import write_bytes_atomically


def load_local_checkpoint(filename: str, map_location: Any = None) -> dict:
    """mmengine's loader for local files, reading them as data (`load_checkpoint_file`); a file holding NaN or
    infinite values is refused, whichever path asks for it (resume, `load_from`, a downstream `init_cfg`)."""
    checkpoint = load_checkpoint_file(filename, map_location=map_location)
    refuse_diverged_checkpoint(checkpoint, f"checkpoint {filename}")
    return checkpoint


def load_trusted_local_checkpoint(filename: str, map_location: Any = None) -> dict:
    """mmengine's loader for local files under `--trust-checkpoint`: full unpickling, with a warning; non-finite
    files are refused as above."""
    checkpoint = load_checkpoint_file(filename, trust=True, map_location=map_location)
    refuse_diverged_checkpoint(checkpoint, f"checkpoint {filename}")
    return checkpoint


def use_safe_checkpoint_loader(trust: bool = False) -> None:
    """Make mmengine's resume / load_from / init_cfg read local checkpoints as data (in full when `trust`)."""
    loader = load_trusted_local_checkpoint if trust else load_local_checkpoint
    CheckpointLoader.register_scheme(prefixes="", loader=loader, force=True)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, but `put` and `put_text` replace the target file in one rename."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        write_bytes_atomically(filepath, obj)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        self.put(obj.encode(encoding), filepath)


def configure_checkpoint_io(trust: bool = False) -> None:
    """Install both fixes: local checkpoints read as data (in full when `trust`), and atomic local writes."""
    use_safe_checkpoint_loader(trust)
    register_backend("local", AtomicLocalBackend, force=True, prefixes="")


def checkpoint_to_load(cfg: Config) -> str | None:
    """The checkpoint a run of `cfg` is about to load: `load_from`, else on resume the work dir's newest intact one."""
    if cfg.get("load_from"):
        return str(cfg.load_from)
    if cfg.get("resume"):
        return str(checkpoint_to_resume(cfg.work_dir))
    return None


def check_checkpoint_fits(
    model: torch.nn.Module, path: str, model_cfg: dict | None = None, *, trust: bool = False
) -> None:
    """Raise CheckpointError unless the checkpoint at `path` has exactly `model`'s keys and shapes.

    The message lists missing, unexpected and wrongly shaped keys, and the backbone the checkpoint was trained
    with when its stored config names one.
    """
    model = model.module if is_model_wrapper(model) else model
    checkpoint = load_checkpoint_file(path, trust=trust)
    refuse_diverged_checkpoint(checkpoint, f"checkpoint {path}")
    state_dict = checkpoint.get("state_dict", checkpoint)
    missing, unexpected, wrong_shape = key_mismatches(model.state_dict(), state_dict, "model ")
    if not (missing or unexpected or wrong_shape):
        return
    trained = (model_config(checkpoint, path) or {}).get("backbone")
    wanted = (model_cfg or {}).get("backbone")
    origin = f" (trained with backbone {trained!r}, this config uses {wanted!r})" if trained and wanted else ""
    raise CheckpointError(
        f"checkpoint {path} does not fit this model{origin}: "
        f"{len(missing)} missing keys [{compact(missing, 5)}], {len(unexpected)} unexpected keys "
        f"[{compact(unexpected, 5)}], {len(wrong_shape)} shape mismatches [{compact(wrong_shape, 5)}]. "
        "mmengine would load it non-strictly and train on partly random weights; pass a checkpoint of this config."
    )


class ChangedSettingsError(CheckpointError):
    """`--resume` under another model or data setting than the checkpoint was trained with."""


def check_resume_settings(cfg: Config, path: str, *, trust: bool = False, allow_changes: bool = False) -> list[str]:
    """The settings (`hiermae.checkpoints.settings`) that differ between the checkpoint at `path` and `cfg`;
    `ChangedSettingsError` naming them unless `allow_changes` (`--resume-anyway`)."""
    stored = stored_settings(load_checkpoint_file(path, trust=trust), path)
    try:
        current = run_settings(cfg)
    except TypeError:  # a config holding objects: it cannot be compared as data (nor stored: see the hook)
        return []
    changes = [] if stored is None else changed_settings(stored, current)
    if changes and not allow_changes:
        raise ChangedSettingsError(
            f"--resume: {path} was trained with other settings than this config: {'; '.join(changes)}. Resuming "
            "would continue its weights, optimiser state and data position under the new settings. Start a new run "
            "in another --work-dir, or pass --resume-anyway to continue regardless."
        )
    return changes


def check_run_checkpoint(
    model: torch.nn.Module, cfg: Config, *, trust: bool = False, allow_changed_settings: bool = False
) -> list[str]:
    """Check the checkpoint a run is about to load: on resume always (the optimiser state must fit too, and the model
    and data settings must be the checkpoint's unless `allow_changed_settings`), and for `load_from` when the model
    is a `MaskedPretrainer` (downstream configs keep mmengine's partial `load_from`, the usual way to start a
    detector from weights with another head). Every checked file must be finite. Returns the settings a resume
    changes (allowed by `allow_changed_settings`)."""
    path = checkpoint_to_load(cfg)
    model_cfg = cfg.get("model") or {}
    if path and (cfg.get("resume") or model_cfg.get("type") == "MaskedPretrainer"):
        check_checkpoint_fits(model, path, model_cfg, trust=trust)
    if path and cfg.get("resume"):
        return check_resume_settings(cfg, path, trust=trust, allow_changes=allow_changed_settings)
    return []
