"""Layer ids for layer-wise learning-rate decay, shared by the family adapters' `lr_layer_id` classmethods.

Each family numbers the parameters of its timm model by depth: 0 for the stem or embedding, 1..N through the
stages or blocks (N = `lr_layer_count`), N + 1 for what follows the last block (final norm, classifier head).
Fine-tuning scales a parameter's learning rate by rate ** (N + 1 - id), so the head learns at the full rate and
the stem at the smallest (BEiT, Bao et al. 2022; MAE, He et al. 2022).
"""

import re
from collections.abc import Sequence


def numbered(name: str, prefix: str) -> int | None:
    """The number right after `prefix` in a parameter name (`numbered("layer3.0.conv1.weight", "layer")` is 3),
    or None when the name does not start that way."""
    match = re.match(rf"{re.escape(prefix)}(\d+)\.", name)
    return None if match is None else int(match[1])


def staged_block_id(name: str, stages: str, depths: Sequence[int]) -> int | None:
    """Id of a parameter under `<stages>.<i>.blocks.<j>.`: one more than the blocks before it. Other parameters of
    stage i (its downsampling layer) share the id of the stage's first block. None outside the stages."""
    match = re.match(rf"{re.escape(stages)}\.(\d+)\.(?:blocks\.(\d+)\.)?", name)
    if match is None:
        return None
    stage, block = int(match[1]), int(match[2] or 0)
    return 1 + sum(depths[:stage]) + block


def nested_block_id(name: str, stages: str, depths: Sequence[int]) -> int | None:
    """Id of a parameter of block j of stage i held as nested sequences, `<stages>.<i>.<j>.`: one more than the
    blocks before it. None outside the stages."""
    match = re.match(rf"{re.escape(stages)}\.(\d+)\.(\d+)\.", name)
    if match is None:
        return None
    return 1 + sum(depths[: int(match[1])]) + int(match[2])


def unknown_parameter(family: str, name: str) -> ValueError:
    """The error for a parameter a family's layer numbering does not place."""
    return ValueError(f"{family}: no layer-wise lr decay id for parameter {name!r} (not a timm {family} parameter)")
