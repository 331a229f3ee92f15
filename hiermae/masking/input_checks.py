"""Checks on what the public API is given, so bad input is a named ValueError / TypeError, not a torch error deep
inside a backbone and not a run that trains on nothing.

- `check_images` / `check_visible` / `check_every_sample_sees`: the encoders' call (`encoder(images, visible)`),
  for every family alike.
- `check_mask_leaves_both`: when a `MaskedPretrainer` is built, its mask must hide at least one unit (else the
  loss is 0 and nothing trains) and show at least one (else the encoder has no input).
- `check_input_size`: at every forward, the images must have the size and channel count the model was built for
  (which the checkpoint and its exports record).
- `check_in_chans`: a model's channel count must be a positive integer.
"""

import torch

from hiermae.masking.masks import MaskGenerator, check_divisible


def channel_count(channels: int) -> str:
    """'1 channel', '4 channels'."""
    return f"{channels} channel" + ("" if channels == 1 else "s")


def check_images(images: object, weights_dtype: torch.dtype | None = None, channels: int = 3) -> None:
    """Raise TypeError / ValueError unless `images` is a non-empty float batch B×C×H×W with C = `channels` (the
    model's `in_chans`), of `weights_dtype` when given (outside autocast a layer needs its input in its weights'
    dtype)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (B×C×H×W), got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(
            f"images must be a floating-point tensor (float32, bfloat16, ...), got {images.dtype}; "
            "convert with images.float() and normalise as in training"
        )
    autocast = torch.is_autocast_enabled(images.device.type)
    if weights_dtype is not None and images.dtype != weights_dtype and not autocast:
        raise TypeError(
            f"images are {images.dtype} but the model's weights are {weights_dtype}: convert with "
            f"images.to({weights_dtype}), or run under torch.autocast"
        )
    if images.dim() != 4:
        hint = " (add the batch dimension: images.unsqueeze(0))" if images.dim() == 3 else ""
        raise ValueError(f"images must be a 4-D batch B×C×H×W, got shape {tuple(images.shape)}{hint}")
    if images.shape[0] == 0:
        raise ValueError(f"images is an empty batch (shape {tuple(images.shape)}): give at least one image")
    if images.shape[1] != channels:
        raise ValueError(
            f"images must have {channel_count(channels)} (the model's in_chans), got {images.shape[1]} in "
            f"{tuple(images.shape)}"
        )


def check_visible(visible: object, images: torch.Tensor, unit: int) -> None:
    """Raise TypeError / ValueError unless `visible` is a bool B×h×w map (one cell per `unit`-px unit of `images`).

    Only shapes and dtypes are read, so the check costs no device wait and no graph break under torch.compile;
    `check_every_sample_sees` reads the values, where the map is on the host.
    """
    grid = (images.shape[0], images.shape[-2] // unit, images.shape[-1] // unit)
    if not isinstance(visible, torch.Tensor) or visible.dtype != torch.bool:
        kind = visible.dtype if isinstance(visible, torch.Tensor) else type(visible).__name__
        raise TypeError(f"visible must be a bool tensor of shape {grid} (one cell per {unit}-px unit), got {kind}")
    if tuple(visible.shape) != grid:
        raise ValueError(
            f"visible must be a bool tensor of shape {grid} (one cell per {unit}-px unit), got {tuple(visible.shape)}"
        )


def check_every_sample_sees(visible: torch.Tensor) -> None:
    """Raise ValueError unless every sample of a B×h×w visible map keeps at least one unit.

    This reads the map's values: free for a CPU map (where plans are built), one device wait for a map on a GPU.
    """
    empty = (~visible.flatten(1).any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"visible has no visible unit in sample(s) {empty[:8]}: an encoder needs at least one visible unit "
            "per image"
        )


def check_mask_leaves_both(generator: MaskGenerator, input_size: int, unit: int) -> None:
    """Raise ValueError unless the mask of a `input_size`-px image hides at least one unit and shows at least one.

    One mask is drawn (seed 0): the generators keep the same counts in every sample.
    """
    side = input_size // unit
    visible = generator(1, (side, side), torch.zeros(1, dtype=torch.long))
    shown, units = int(visible.sum()), side * side
    setting = (
        f"{type(generator).__name__} with mask ratio {generator.mask_ratio} at input size {input_size} "
        f"({side}×{side} = {units} units of {unit} px)"
    )
    if units < 2:
        raise ValueError(f"{setting}: one unit cannot be both masked and visible; use an input size ≥ {2 * unit}")
    if shown == units:
        least = 0.5 / units  # the ratio whose rounded count of masked units is 1
        raise ValueError(
            f"{setting} masks no unit: the loss would be 0 and nothing would train. Raise the mask ratio above "
            f"{least:.3f} or the input size"
        )
    if shown == 0:
        raise ValueError(f"{setting} leaves no unit visible: the encoder would see nothing. Lower the mask ratio")


def check_input_size(
    images: torch.Tensor, input_size: int, unit: int, weights_dtype: torch.dtype, channels: int = 3
) -> None:
    """Raise TypeError / ValueError unless `images` is a valid batch of `input_size`×`input_size` images (the
    model's size) with `channels` channels, in the weights' dtype."""
    check_images(images, weights_dtype, channels)
    check_divisible(images.shape[-2:], unit)
    if tuple(images.shape[-2:]) != (input_size, input_size):
        height, width = images.shape[-2:]
        raise ValueError(
            f"images are {height}x{width} but the model was built for input_size={input_size} (recorded in its "
            f"checkpoints and exports): set model.input_size={height} or make the data {input_size} px"
        )


def check_in_chans(in_chans: object) -> None:
    """Raise ValueError unless `in_chans` (the input channels a model is built for) is an integer ≥ 1."""
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be an integer ≥ 1 (1 for grey, 3 for RGB, ...), got {in_chans!r}")
