"""Reconstruction grids: original | masked input | prediction | prediction pasted over the visible units.

Images of any channel count are shown in colour: one grey channel in all three display channels (a grey image
stays grey), three as they are, and other counts as a band triple (`bands`, 0-based, shown as red, green, blue;
default the first three) that a caption above the grid names.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid, save_image

from hiermae.masking import MaskPyramid
from hiermae.utils import replace_atomically

CAPTION_HEIGHT = 14  # px of the strip above a grid that names its bands


def display_bands(channels: int, bands: Sequence[int] | None = None) -> tuple[int, int, int]:
    """The channels shown as red, green and blue: `bands` checked against `channels`, or the default (grey: its one
    channel three times; otherwise the first three, the last repeated when there are only two)."""
    if bands is None:
        return tuple(min(i, channels - 1) for i in range(3))
    shown = tuple(int(band) for band in bands)
    if len(shown) != 3 or not all(0 <= band < channels for band in shown):
        raise ValueError(f"bands must be three channel numbers in 0..{channels - 1} (red, green, blue), got {bands}")
    return shown


def band_caption(channels: int, bands: tuple[int, int, int]) -> str | None:
    """The caption naming the shown bands; None for a grey or RGB image shown as it is."""
    if bands == display_bands(channels) and channels in (1, 3):
        return None
    return f"bands {bands[0]},{bands[1]},{bands[2]} as RGB (of 0-{channels - 1})"


def reconstruction_grid(
    images: torch.Tensor,
    prediction: torch.Tensor,
    visible: torch.Tensor,
    unit: int,
    bands: Sequence[int] | None = None,
) -> torch.Tensor:
    """Stack the four views of each sample into one (4B)×3×H×W batch, rows of four, in the display channels of
    `display_bands`; inputs B×C×H×W in [0, 1]."""
    keep = MaskPyramid(visible, unit).at(1).unsqueeze(1).to(images.dtype)
    grey = torch.full_like(images, 0.5)
    masked_input = images * keep + grey * (1 - keep)
    pasted = images * keep + prediction * (1 - keep)
    views = torch.stack([images, masked_input, prediction, pasted], dim=1)
    shown = list(display_bands(images.shape[1], bands))
    return views.flatten(0, 1)[:, shown].clamp(0, 1)


def save_reconstruction_grid(
    path: Path,
    images: torch.Tensor,
    prediction: torch.Tensor,
    visible: torch.Tensor,
    unit: int,
    bands: Sequence[int] | None = None,
) -> Path:
    """Write the grid as a PNG, one sample per row (with a caption naming the bands when they are chosen), and
    return its path."""
    shown = display_bands(images.shape[1], bands)
    grid = reconstruction_grid(images.float().cpu(), prediction.float().cpu(), visible.cpu(), unit, shown)
    caption = band_caption(images.shape[1], shown)
    with replace_atomically(path) as staged:  # an interrupted write leaves the earlier grid, never half a PNG
        if caption is None:
            save_image(grid, staged, format="PNG", nrow=4, padding=2, pad_value=1.0)
        else:
            write_captioned_grid(staged, grid, caption)
    return path


def write_captioned_grid(path: Path, grid: torch.Tensor, caption: str) -> None:
    """Write `grid` as a PNG under a line of `caption` text."""
    pixels = make_grid(grid, nrow=4, padding=2, pad_value=1.0).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    picture = Image.fromarray(pixels.permute(1, 2, 0).numpy())
    page = Image.new("RGB", (picture.width, picture.height + CAPTION_HEIGHT), "white")
    page.paste(picture, (0, CAPTION_HEIGHT))
    ImageDraw.Draw(page).text((2, 1), caption, fill="black")
    page.save(path, format="PNG")
