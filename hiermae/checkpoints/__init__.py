"""Checkpoint files: read as data, key checks, literal model configs, atomic writes, resume pointers."""

from hiermae.checkpoints.keys import CheckpointError, compact, key_mismatches
from hiermae.checkpoints.literal_config import MODEL_CONFIG_KEY, model_config, plain_data
from hiermae.checkpoints.resume import checkpoint_to_resume, read_pointer, write_pointer
from hiermae.checkpoints.runner import check_run_checkpoint, configure_checkpoint_io
from hiermae.checkpoints.safe_load import load_checkpoint_file

__all__ = [
    "CheckpointError", "MODEL_CONFIG_KEY", "check_run_checkpoint", "checkpoint_to_resume", "compact",
    "configure_checkpoint_io", "key_mismatches", "load_checkpoint_file", "model_config", "plain_data", "read_pointer",
    "write_pointer"
]
