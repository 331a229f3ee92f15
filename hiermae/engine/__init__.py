"""The mmengine runtime: runner and config building, hooks, mixed precision, config checks, CLI options."""

from hiermae.engine import amp  # noqa: F401  (registers the mixed-precision optimiser wrapper)
from hiermae.engine.cli_options import (
    ConfigOptions,
    ToolParser,
    existing_file,
    file_to_write,
    folder_to_write,
    image_size,
    number,
    positive_int,
    random_seed,
    ratio,
)
from hiermae.engine.config_check import ConfigValueError, UnknownConfigKeyError
from hiermae.engine.hooks import ReconstructionHook, TrainingSummaryHook, to_unit_range
from hiermae.engine.training import (
    build_config,
    build_runner,
    claim_work_dir,
    cleanup_on_sigterm,
    enable_amp,
    init_cpu_process_group,
    new_run_folder,
)
from hiermae.engine.visualization import save_reconstruction_grid

__all__ = [
    "ConfigOptions", "ConfigValueError", "ReconstructionHook", "ToolParser", "TrainingSummaryHook",
    "UnknownConfigKeyError", "build_config", "build_runner", "claim_work_dir", "cleanup_on_sigterm", "enable_amp",
    "existing_file", "file_to_write", "folder_to_write", "image_size", "init_cpu_process_group", "new_run_folder",
    "number", "positive_int", "random_seed", "ratio", "save_reconstruction_grid", "to_unit_range"
]
