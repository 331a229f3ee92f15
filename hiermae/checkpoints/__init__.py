"""Checkpoint files: read as data, key checks, literal model configs, atomic writes, resume pointers."""

from hiermae.checkpoints.keys import (
    CheckpointError,
    compact,
    key_mismatches,
    non_finite_tensors,
    refuse_diverged_checkpoint,
)
from hiermae.checkpoints.literal_config import MODEL_CONFIG_KEY, model_config, plain_data
from hiermae.checkpoints.resume import (
    NothingToResumeError,
    checkpoint_to_resume,
    read_pointer,
    remove_stale_partials,
    saved_checkpoints,
    write_pointer,
)
from hiermae.checkpoints.runner import check_run_checkpoint, configure_checkpoint_io
from hiermae.checkpoints.safe_load import load_checkpoint_file
from hiermae.checkpoints.settings import SETTINGS_KEY, run_settings

__all__ = [
    "CheckpointError", "MODEL_CONFIG_KEY", "NothingToResumeError", "SETTINGS_KEY", "check_run_checkpoint",
    "checkpoint_to_resume", "compact", "configure_checkpoint_io", "key_mismatches", "load_checkpoint_file",
    "model_config", "non_finite_tensors", "plain_data", "read_pointer", "refuse_diverged_checkpoint",
    "remove_stale_partials", "run_settings", "saved_checkpoints", "write_pointer"
]
