"""A checkpoint's input channels, and its stem fitted to another channel count as timm fits pretrained weights.

timm's `adapt_input_conv` (called, not restated): to one channel the stem's weights are summed over the source
channels; to C channels the source channels are repeated (or cut) to C and scaled by source / C. Either way an
image whose channels are all equal gives the stem the response the source model gave it, so a 3-channel
checkpoint fine-tunes on grey images, a grey one on RGB, and any C on C'.
"""

import torch
from timm.models import adapt_input_conv, get_pretrained_cfg

from hiermae.checkpoints import CheckpointError


def first_conv_key(backbone: str) -> str | None:
    """The state-dict key of the stem's convolution weight of timm's `backbone` (its pretrained config's
    `first_conv`, what timm adapts); None when timm names no single one."""
    cfg = get_pretrained_cfg(backbone)
    first_conv = cfg.first_conv if cfg is not None else None
    if isinstance(first_conv, list | tuple):
        first_conv = first_conv[0] if len(first_conv) == 1 else None
    return f"{first_conv}.weight" if first_conv else None


def stem_channels(weights: dict[str, torch.Tensor], backbone: str) -> int | None:
    """The number of input channels the stem of `weights` (timm's names) reads; None when they hold no 4-d stem
    convolution (the strict check against timm then names what is missing)."""
    key = first_conv_key(backbone)
    stem = weights.get(key) if key else None
    return int(stem.shape[1]) if stem is not None and stem.ndim == 4 else None


def adapt_input_channels(
    weights: dict[str, torch.Tensor], backbone: str, in_chans: int
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """`weights` with the stem fitted to `in_chans` input channels by timm's `adapt_input_conv`, and a line saying
    what changed (none when the stem already reads `in_chans`)."""
    key, source = first_conv_key(backbone), stem_channels(weights, backbone)
    if source == in_chans:
        return weights, []
    if key is None or source is None:
        raise CheckpointError(f"cannot fit {backbone}'s stem to {in_chans} input channels: timm names no stem to adapt")
    rule = "summed over" if in_chans == 1 else f"repeated to {in_chans} and scaled by {source}/{in_chans} of"
    adapted = adapt_input_conv(in_chans, weights[key], base_chans=source)
    note = (
        f"adapted {key} from {source} to {in_chans} input channels (timm's adapt_input_conv: {rule} the "
        f"{source} source channels): {tuple(weights[key].shape)} → {tuple(adapted.shape)}"
    )
    return {**weights, key: adapted}, [note]
