"""Reconstruction grids: original | masked input | prediction | prediction pasted over the visible units."""

from pathlib import Path

import torch
from torchvision.utils import save_image

from hiermae.masking import MaskPyramid


def reconstruction_grid(
    images: torch.Tensor, prediction: torch.Tensor, visible: torch.Tensor, unit: int
) -> torch.Tensor:
    """Stack the four views of each sample into one (4B)×3×H×W batch, rows of four; inputs in [0, 1]."""
    keep = MaskPyramid(visible, unit).at(1).unsqueeze(1).to(images.dtype)
    grey = torch.full_like(images, 0.5)
    masked_input = images * keep + grey * (1 - keep)
    pasted = images * keep + prediction * (1 - keep)
    views = torch.stack([images, masked_input, prediction, pasted], dim=1)
    return views.flatten(0, 1).clamp(0, 1)


def save_reconstruction_grid(
    path: Path, images: torch.Tensor, prediction: torch.Tensor, visible: torch.Tensor, unit: int
) -> Path:
    """Write the grid as a PNG, one sample per row, and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = reconstruction_grid(images.float().cpu(), prediction.float().cpu(), visible.cpu(), unit)
    save_image(grid, path, nrow=4, padding=2, pad_value=1.0)
    return path
