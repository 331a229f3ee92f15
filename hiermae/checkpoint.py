"""Checkpoint I/O for mmengine runs: loading that works with torch ≥ 2.6, and atomic writes.

torch 2.6 made `torch.load(weights_only=True)` the default; mmengine 0.10.7's local loader relies on the old
default, so `resume` and `load_from` fail on its own checkpoints (they pickle a `HistoryBuffer`). hiermae
re-registers mmengine's loader for local paths with `weights_only=False`: only files the user points at are read.

mmengine writes a checkpoint straight into its final path, so a kill during the write leaves a truncated file
under the name `last_checkpoint` is about to point at. hiermae's local backend writes to a temporary file in the
same folder and renames it into place, so every name on disk is a complete file.
"""

import os
import tempfile
from pathlib import Path

import torch
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.runner.checkpoint import CheckpointLoader


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
