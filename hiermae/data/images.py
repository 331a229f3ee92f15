"""Any image file PIL can open, as 8-bit RGB pixels: every mode and bit depth mapped to 0–255 by a stated rule.

- Camera orientation (EXIF) is applied, so pixels are the ones a viewer shows.
- 16-bit integers (`I;16*`) scale by 255/65535, rounded (65535 → 255, 257 → 1).
- 32-bit integers (`I`) keep their values when they all lie in 0–255, scale like 16-bit data when they lie in
  0–65535 (16-bit PNGs open as `I` in some Pillow versions), and otherwise scale by 255/max; negatives clip to 0.
- Floats (`F`) are read as 0–1 when their maximum is at most 1, else by the integer rule; NaN counts as 0.
- Transparency (alpha channels, a palette or grey/RGB colour marked transparent) is composited over black, so a
  fully transparent pixel is black whatever colour it stores.
- Everything else (1-bit, L, P, RGB, RGBX, CMYK, YCbCr, LAB, ...) converts with PIL's own colour conversion.

Datasets read a crop (`read_rgb_crop`): the box is drawn from the image's header size first, a JPEG is
then decoded at the smallest DCT scale (1, 1/2, 1/4, 1/8) that keeps the box at least the output size on each
side (`Image.draft`), and only the box is resized (torchvision's antialiased bilinear resize, ~3× faster than
PIL's here): a 12-megapixel photo costs a fraction of a full decode.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps
from torchvision.transforms.v2 import functional as TF

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def scale_to_8_bits(values: np.ndarray, *, unit_range: bool = False) -> np.ndarray:
    """Finite single-channel numbers → uint8 by the module's rule (16-bit ranges by 255/65535, larger by max)."""
    values = values.clip(min=0)
    peak = float(values.max(initial=0.0))
    if unit_range:
        scale = 255.0
    elif peak <= 255:
        scale = 1.0
    elif peak <= 65535:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 / peak
    return np.rint(values * scale).clip(0, 255).astype(np.uint8)


def has_transparency(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or "transparency" in image.info


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """A writable H×W×3 uint8 RGB array of an opened PIL image, by the rules in the module docstring."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES:
        grey = np.rint(np.asarray(image).astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("I", "F"):
        values = np.nan_to_num(np.asarray(image).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        grey = scale_to_8_bits(values, unit_range=image.mode == "F" and values.max(initial=0.0) <= 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if has_transparency(image):
        if image.mode == "La":  # premultiplied grey: PIL converts it only to LA
            image = image.convert("LA")
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        alpha = rgba[:, :, 3:]
        return ((rgba[:, :, :3] * alpha + 127) // 255).astype(np.uint8)
    return np.array(image.convert("RGB"))  # a writable copy: torch.from_numpy warns on PIL's read-only buffer


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode `path` to H×W×3 uint8 RGB; PIL's errors (decompression-bomb guard included) propagate to the caller."""
    with Image.open(path) as image:
        image.load()
        return to_rgb_array(image)


def random_resized_box(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """A random crop box (left, top, right, bottom) covering a `scale` fraction of the area with aspect ratio in
    `ratio` (log-uniform); after 10 misses, the largest centred box within `ratio`. The Inception crop
    (Szegedy et al., 2015), drawn from torch's generator so data-loader workers' seeds apply."""
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(()).item())
        aspect = math.exp(log_low + (log_high - log_low) * torch.rand(()).item())
        box_width, box_height = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < box_width <= width and 0 < box_height <= height:
            left = int(torch.randint(0, width - box_width + 1, ()).item())
            top = int(torch.randint(0, height - box_height + 1, ()).item())
            return left, top, left + box_width, top + box_height
    aspect = width / height
    if aspect < ratio[0]:
        box_width, box_height = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        box_width, box_height = round(height * ratio[1]), height
    else:
        box_width, box_height = width, height
    left, top = (width - box_width) // 2, (height - box_height) // 2
    return left, top, left + box_width, top + box_height


def centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred square: resizing it to S×S is resizing the short side to S, then centre-cropping S×S."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def read_rgb_crop(
    source: str | Path | BinaryIO, size: int, draw_box: Callable[[int, int], tuple[int, int, int, int]]
) -> torch.Tensor:
    """The box `draw_box(width, height)` picks in the upright image, resized to a 3×size×size uint8 tensor
    (bilinear, antialiased); pixels follow the module's rules. JPEGs decode only at the resolution the box needs.
    PIL's errors (decompression-bomb guard included) propagate to the caller."""
    with Image.open(source) as image:
        stored = image.size
        transposed = image.getexif().get(ExifTags.Base.Orientation, 1) in TRANSPOSING_ORIENTATIONS
        upright = stored[::-1] if transposed else stored
        box = draw_box(*upright)
        needed = max(size / (box[2] - box[0]), size / (box[3] - box[1]))  # fraction of full resolution
        if image.format == "JPEG" and needed < 1:
            image.draft(None, (math.ceil(stored[0] * needed), math.ceil(stored[1] * needed)))
        image.load()
        rgb = torch.from_numpy(to_rgb_array(image)).permute(2, 0, 1)
    x_scale, y_scale = rgb.shape[2] / upright[0], rgb.shape[1] / upright[1]
    left, top = round(box[0] * x_scale), round(box[1] * y_scale)
    width = max(1, min(round(box[2] * x_scale), rgb.shape[2]) - left)
    height = max(1, min(round(box[3] * y_scale), rgb.shape[1]) - top)
    return TF.resized_crop(rgb, top, left, height, width, [size, size], antialias=True)


@dataclass(frozen=True)
class CropReader:
    """How a dataset reads one image, as a 3×size×size uint8 tensor: `crop='random'` draws a random-resized crop
    (`random_resized_box` with `scale`) for training; `'centre'` takes the centred square, as evaluation
    does. With `flip`, the result is mirrored left-right half the time."""

    size: int
    scale: tuple[float, float] = (0.2, 1.0)
    flip: bool = True
    crop: str = "random"

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"image_size must be a positive integer, got {self.size!r}")
        low, high = self.scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {tuple(self.scale)}")
        if self.crop not in ("random", "centre"):
            raise ValueError(f"crop must be 'random' or 'centre', got {self.crop!r}")

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        if self.crop == "centre":
            return centre_box(width, height)
        return random_resized_box(width, height, tuple(self.scale))

    def __call__(self, source: str | Path | BinaryIO) -> torch.Tensor:
        tensor = read_rgb_crop(source, self.size, self.box)
        if self.flip and torch.rand(()) < 0.5:
            tensor = tensor.flip(-1)
        return tensor.contiguous()
