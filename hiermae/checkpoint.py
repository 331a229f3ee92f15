"""Checkpoint loading that works with torch ≥ 2.6 for files the user names.

torch 2.6 made `torch.load(weights_only=True)` the default; mmengine 0.10.7's local loader relies on the old
default, so `resume` and `load_from` fail on its own checkpoints (they pickle a `HistoryBuffer`). hiermae
re-registers mmengine's loader for local paths with `weights_only=False`: only files the user points at are read.
"""

import os

import torch
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
