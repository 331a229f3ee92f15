"""Masks: generators, mask units, input checks, and the host-built plans that say where encoders compute."""

from hiermae.masking.input_checks import (
    check_every_sample_sees,
    check_images,
    check_in_chans,
    check_input_size,
    check_mask_leaves_both,
    check_visible,
)
from hiermae.masking.masks import MaskGenerator, MaskPyramid, check_divisible, check_mask_ratio
from hiermae.masking.plans import to_device
from hiermae.masking.units import from_units, to_units

__all__ = [
    "MaskGenerator", "MaskPyramid", "check_divisible", "check_every_sample_sees", "check_images", "check_in_chans",
    "check_input_size", "check_mask_leaves_both", "check_mask_ratio", "check_visible", "from_units", "to_device",
    "to_units",
]
