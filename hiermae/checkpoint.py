"""Checkpoint I/O for mmengine runs: loading that works with torch ≥ 2.6, and atomic writes.

torch 2.6 made `torch.load(weights_only=True)` the default; mmengine 0.10.7's local loader relies on the old
default, so `resume` and `load_from` fail on its own checkpoints (they pickle a `HistoryBuffer`). hiermae
re-registers mmengine's loader for local paths with `weights_only=False`: only files the user points at are read.

mmengine writes a checkpoint straight into its final path, so a kill during the write leaves a truncated file
under the name `last_checkpoint` is about to point at. hiermae's local backend writes to a temporary file in the
same folder and renames it into place, so every name on disk is a complete file.

mmengine's resume and load_from load weights non-strictly: a checkpoint of another backbone would leave most of the
model at its random initialisation without stopping the run. `check_checkpoint_fits` refuses such a file first.
"""

import os
import tempfile
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import CheckpointLoader, find_latest_checkpoint

from hiermae.downstream.checkpoints import CheckpointError, config_of, key_mismatches
from hiermae.downstream.key_report import compact


def load_local_checkpoint(filename: str, map_location: str | torch.device | None = None) -> dict:
    """Load an mmengine (or plain torch) checkpoint file, trusting its pickled metadata."""
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return torch.load(filename, map_location=map_location, weights_only=False)


def trust_local_checkpoints() -> None:
    """Make mmengine's resume / load_from read local checkpoints written by mmengine itself."""
    CheckpointLoader.register_scheme(prefixes="", loader=load_local_checkpoint, force=True)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, but `put` and `put_text` replace the target file in one rename."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        target = Path(filepath)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(obj)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        self.put(obj.encode(encoding), filepath)


def configure_checkpoint_io() -> None:
    """Install both fixes: trusted loading of local checkpoints and atomic local writes."""
    trust_local_checkpoints()
    register_backend("local", AtomicLocalBackend, force=True, prefixes="")


def checkpoint_to_load(cfg: Config) -> str | None:
    """The checkpoint a run of `cfg` is about to load: `load_from`, else on resume the work dir's latest save."""
    if cfg.get("load_from"):
        return str(cfg.load_from)
    if cfg.get("resume"):
        return find_latest_checkpoint(cfg.work_dir)
    return None


def check_checkpoint_fits(model: torch.nn.Module, path: str, model_cfg: dict | None = None) -> None:
    """Raise CheckpointError unless the checkpoint at `path` has exactly `model`'s keys and shapes.

    The message lists missing, unexpected and wrongly shaped keys, and the backbone the checkpoint was trained
    with when its stored config names one.
    """
    model = model.module if is_model_wrapper(model) else model
    checkpoint = load_local_checkpoint(path, map_location="cpu")
    state_dict = checkpoint.get("state_dict", checkpoint)
    missing, unexpected, wrong_shape = key_mismatches(model.state_dict(), state_dict, "model ")
    if not (missing or unexpected or wrong_shape):
        return
    trained = (config_of(checkpoint) or {}).get("model", {}).get("backbone")
    wanted = (model_cfg or {}).get("backbone")
    origin = f" (trained with backbone {trained!r}, this config uses {wanted!r})" if trained and wanted else ""
    raise CheckpointError(
        f"checkpoint {path} does not fit this model{origin}: "
        f"{len(missing)} missing keys [{compact(missing, 5)}], {len(unexpected)} unexpected keys "
        f"[{compact(unexpected, 5)}], {len(wrong_shape)} shape mismatches [{compact(wrong_shape, 5)}]. "
        "mmengine would load it non-strictly and train on partly random weights; pass a checkpoint of this config."
    )


def check_run_checkpoint(model: torch.nn.Module, cfg: Config) -> None:
    """Check the checkpoint a run is about to load: on resume always (the optimiser state must fit too), and for
    `load_from` when the model is a `MaskedPretrainer` (downstream configs keep mmengine's partial `load_from`, the
    usual way to start a detector from weights with another head)."""
    path = checkpoint_to_load(cfg)
    model_cfg = cfg.get("model") or {}
    if path and (cfg.get("resume") or model_cfg.get("type") == "MaskedPretrainer"):
        check_checkpoint_fits(model, path, model_cfg)
