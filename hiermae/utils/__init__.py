"""Foundation leaves (import nothing of the project): registries, seeds, atomic files, FLOP and memory records."""

from hiermae.utils.atomic_files import replace_atomically, staged_target, write_bytes_atomically, write_json
from hiermae.utils.dependencies import require_mmdet, require_mmseg, require_transfer_stack
from hiermae.utils.flop_recorder import record_flops, recording
from hiermae.utils.registry import DECODERS, ENCODERS, LOSSES, MASK_GENERATORS, TARGETS, build_part
from hiermae.utils.regular_files import open_regular_file, read_regular_bytes
from hiermae.utils.resources import step_peak_rss_bytes
from hiermae.utils.seeding import batch_seeds, mix_seed

__all__ = [
    "DECODERS", "ENCODERS", "LOSSES", "MASK_GENERATORS", "TARGETS", "batch_seeds", "build_part", "mix_seed",
    "open_regular_file", "read_regular_bytes", "record_flops", "recording", "replace_atomically", "require_mmdet",
    "require_mmseg", "require_transfer_stack", "staged_target", "step_peak_rss_bytes", "write_bytes_atomically",
    "write_json"
]
