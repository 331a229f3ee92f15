"""The mmengine runtime: runner and config building, hooks, mixed precision, config checks, CLI options."""

from hiermae.engine import amp  # noqa: F401  (registers the mixed-precision optimiser wrapper)
from hiermae.engine.cli_options import image_size, number, positive_int, random_seed, ratio
from hiermae.engine.hooks import ReconstructionHook, TrainingSummaryHook, to_unit_range
from hiermae.engine.training import (
    build_config,
    build_runner,
    claim_work_dir,
    cleanup_on_sigterm,
    enable_amp,
    init_cpu_process_group,
)
from hiermae.engine.visualization import save_reconstruction_grid

__all__ = [
    "ReconstructionHook", "TrainingSummaryHook", "build_config", "build_runner", "claim_work_dir", "cleanup_on_sigterm",
    "enable_amp", "image_size", "init_cpu_process_group", "number", "positive_int", "random_seed", "ratio",
    "save_reconstruction_grid", "to_unit_range"
]
