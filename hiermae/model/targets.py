"""Reconstruction targets: what the decoder must predict for each mask unit.

A target turns images (B×C×H×W, C the model's `in_chans`) into a target map B×`channels`×(H/stride)×(W/stride);
the decoder predicts a map of the same shape. `to_image` maps a prediction back into the input's pixel space for
visualisation (None where the target cannot be inverted, as for HOG).
"""

import math

import torch
import torch.nn.functional as F

from hiermae.masking import check_in_chans, from_units, to_units
from hiermae.utils import TARGETS


class Target:
    """Base class: a target map with `channels` channels at `stride` pixels per cell, for images of `in_chans`
    channels (the model's; `MaskedPretrainer` passes its own)."""

    stride: int = 1

    def __init__(self, in_chans: int = 3) -> None:
        check_in_chans(in_chans)
        self.in_chans = in_chans

    @property
    def channels(self) -> int:
        """Channels of the target map (the decoder predicts as many): the image's own for pixel targets."""
        return self.in_chans

    def __call__(self, images: torch.Tensor, unit: int) -> torch.Tensor:
        raise NotImplementedError

    def to_image(self, prediction: torch.Tensor, images: torch.Tensor, unit: int) -> torch.Tensor | None:
        """The prediction in the input's pixel space, or None when the target is not invertible."""
        return None


@TARGETS.register_module(name="pixels")
class PixelTarget(Target):
    """The raw input pixels."""

    def __call__(self, images: torch.Tensor, unit: int) -> torch.Tensor:
        return images

    def to_image(self, prediction: torch.Tensor, images: torch.Tensor, unit: int) -> torch.Tensor:
        return prediction


@TARGETS.register_module(name="norm_pixels")
class NormalizedPixelTarget(Target):
    """Pixels normalised by the mean and standard deviation of their own mask unit (MAE, He et al. 2022).

    `per_channel` (the default): each channel of a unit by its own statistics, so bands of different scales
    (multispectral data) weigh alike in the loss. False: one mean and deviation over all the unit's pixels and
    channels, as MAE normalises its RGB patches. The two agree when every channel holds the same image (grey
    repeated as RGB), up to the n - 1 of the unbiased variance (3e-4 relative in 32-px units).
    """

    def __init__(self, in_chans: int = 3, eps: float = 1e-6, per_channel: bool = True) -> None:
        super().__init__(in_chans)
        self.eps = eps
        self.per_channel = per_channel

    def unit_blocks(self, maps: torch.Tensor, unit: int) -> torch.Tensor:
        """A B×C×H×W map in float32 as B×C×h×unit×w×unit blocks, one per mask unit."""
        batch, channels, height, width = maps.shape
        return maps.float().reshape(batch, channels, height // unit, unit, width // unit, unit)

    def unit_statistics(self, images: torch.Tensor, unit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-unit mean and standard deviation (per channel, or over all channels), shaped to broadcast over
        `unit_blocks`."""
        blocks = self.unit_blocks(images, unit)
        dims = (3, 5) if self.per_channel else (1, 3, 5)
        return blocks.mean(dims, keepdim=True), (blocks.var(dims, keepdim=True) + self.eps).sqrt()

    def __call__(self, images: torch.Tensor, unit: int) -> torch.Tensor:
        mean, std = self.unit_statistics(images, unit)
        return ((self.unit_blocks(images, unit) - mean) / std).reshape(images.shape)

    def to_image(self, prediction: torch.Tensor, images: torch.Tensor, unit: int) -> torch.Tensor:
        mean, std = self.unit_statistics(images, unit)
        return (self.unit_blocks(prediction, unit) * std + mean).reshape(prediction.shape)


@TARGETS.register_module(name="hog")
class HOGTarget(Target):
    """Histograms of oriented gradients per cell and image channel (the MaskFeat target, Wei et al. 2022).

    Unsigned orientations in `bins` hard bins weighted by gradient magnitude, summed over `cell`×`cell` pixels,
    then L2-normalised over each mask unit so every unit's histogram has the same scale.
    """

    def __init__(self, in_chans: int = 3, bins: int = 9, cell: int = 8) -> None:
        super().__init__(in_chans)
        self.bins = bins
        self.stride = cell

    @property
    def channels(self) -> int:
        """One histogram of `bins` per image channel."""
        return self.in_chans * self.bins

    def __call__(self, images: torch.Tensor, unit: int) -> torch.Tensor:
        if unit % self.stride:
            raise ValueError(f"HOG cell {self.stride} must divide the mask unit {unit}")
        images = images.float()
        batch, colours, height, width = images.shape
        sobel_x = images.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        kernels = torch.stack([sobel_x, sobel_x.t()]).unsqueeze(1).repeat(colours, 1, 1, 1)
        padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
        gradients = F.conv2d(padded, kernels, groups=colours).view(batch, colours, 2, height, width)
        magnitude = gradients.norm(dim=2)
        angle = torch.atan2(gradients[:, :, 1], gradients[:, :, 0]) % math.pi
        bin_index = (angle / math.pi * self.bins).long().clamp_(max=self.bins - 1)
        histogram = images.new_zeros(batch, colours, self.bins, height, width)
        histogram.scatter_(2, bin_index.unsqueeze(2), magnitude.unsqueeze(2))
        cells = F.avg_pool2d(histogram.view(batch, colours * self.bins, height, width), self.stride) * self.stride**2
        per_unit = to_units(cells, unit // self.stride)
        per_unit = F.normalize(per_unit, dim=-1)
        return from_units(per_unit, unit // self.stride, colours * self.bins)
