"""Reconstruction targets: what the decoder must predict for each mask unit.

A target turns images (B×3×H×W) into a target map B×C×(H/stride)×(W/stride); the decoder predicts a map of the
same shape. `to_image` maps a prediction back into the input's pixel space for visualisation (None where the
target cannot be inverted, as for HOG).
"""

import math

import torch
import torch.nn.functional as F

from hiermae.masking import from_units, to_units
from hiermae.utils import TARGETS


class Target:
    """Base class: a target map with `channels` channels at `stride` pixels per cell."""

    channels: int = 3
    stride: int = 1

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
    """Pixels normalised by the mean and standard deviation of their own mask unit (MAE, He et al. 2022)."""

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = eps

    def unit_statistics(self, images: torch.Tensor, unit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-unit mean and standard deviation over all pixels and channels, shaped B×h×w×1."""
        units = to_units(images.float(), unit)
        return units.mean(-1, keepdim=True), (units.var(-1, keepdim=True) + self.eps).sqrt()

    def __call__(self, images: torch.Tensor, unit: int) -> torch.Tensor:
        mean, std = self.unit_statistics(images, unit)
        return from_units((to_units(images.float(), unit) - mean) / std, unit, images.shape[1])

    def to_image(self, prediction: torch.Tensor, images: torch.Tensor, unit: int) -> torch.Tensor:
        mean, std = self.unit_statistics(images, unit)
        return from_units(to_units(prediction.float(), unit) * std + mean, unit, images.shape[1])


@TARGETS.register_module(name="hog")
class HOGTarget(Target):
    """Histograms of oriented gradients per cell and colour channel (the MaskFeat target, Wei et al. 2022).

    Unsigned orientations in `bins` hard bins weighted by gradient magnitude, summed over `cell`×`cell` pixels,
    then L2-normalised over each mask unit so every unit's histogram has the same scale.
    """

    def __init__(self, bins: int = 9, cell: int = 8) -> None:
        self.bins = bins
        self.stride = cell
        self.channels = 3 * bins

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
