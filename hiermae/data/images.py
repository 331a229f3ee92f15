"""Any image file PIL can open, as 8-bit RGB or grey pixels, and multi-band TIFFs: every mode, bit depth and
sample type mapped to 0–255 by a stated rule.

- Camera orientation (EXIF) is applied, so pixels are the ones a viewer shows.
- 16-bit integers (`I;16*`) scale by 255/65535, rounded (65535 → 255, 257 → 1).
- 32-bit integers (`I`) keep their values when they all lie in 0–255, scale like 16-bit data when they lie in
  0–65535 (16-bit PNGs open as `I` in some Pillow versions), and otherwise scale by 255/max; negatives clip to 0.
- Floats (`F`) are read as 0–1 when their maximum is at most 1, else by the integer rule; NaN counts as 0.
- Transparency (alpha channels, a palette or grey/RGB colour marked transparent) is composited over black, so a
  fully transparent pixel is black whatever colour it stores.
- Everything else (1-bit, L, P, RGB, RGBX, CMYK, YCbCr, LAB, ...) converts with PIL's own colour conversion.

The number of channels a dataset reads (`CropReader.channels`) picks the reader:
- 3: RGB, by the rules above.
- 1: one grey channel (`to_grey_array`), never through RGB. The grey modes keep their values: L as is, 16-bit
  (`I;16`, `I;16B`, ...), `I` and `F` by the rules above, so a 16-bit pixel v becomes round(v · 255/65535);
  1-bit is 0/255, LA is composited over black; a colour file becomes PIL's luma (L = 0.299 R + 0.587 G + 0.114 B).
- any other C: a TIFF with C bands (`read_bands`, with `tifffile`): samples per pixel or one plane per band.
  uint8 is kept; other integer and float types follow the rules above, with one scale for all bands of a file so
  their relative brightness stays. A file with another band count, or not a TIFF, raises `ChannelCountError`.

Datasets read a crop (`read_rgb_crop`, `read_grey_crop`; `read_band_crop` for TIFF bands): the box is drawn from
the image's header size first, a JPEG is then decoded at the smallest DCT scale (1, 1/2, 1/4, 1/8) that keeps the
box at least the output size on each side (`Image.draft`), and only the box is resized (torchvision's antialiased
bilinear resize, ~3× faster than PIL's here): a 12-megapixel photo costs a fraction of a full decode.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import tifffile
import torch
from PIL import ExifTags, Image, ImageOps
from torchvision.transforms.v2 import functional as TF

from hiermae.utils import open_regular_file

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


def numeric_to_8_bits(values: np.ndarray) -> np.ndarray:
    """Integer or float samples of any shape (not uint8) → uint8 by the module's rules: 16-bit types by 255/65535,
    other integers by their range, floats as 0–1 when their maximum is at most 1; NaN and infinities count as 0."""
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:  # either byte order
        return np.rint(values.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    unit_range = values.dtype.kind == "f" and finite.max(initial=0.0) <= 1.0
    return scale_to_8_bits(finite, unit_range=unit_range)


def has_transparency(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or "transparency" in image.info


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """A writable H×W×3 uint8 RGB array of an opened PIL image, by the rules in the module docstring."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        return np.repeat(numeric_to_8_bits(np.asarray(image))[:, :, None], 3, axis=2)
    if has_transparency(image):
        if image.mode == "La":  # premultiplied grey: PIL converts it only to LA
            image = image.convert("LA")
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        alpha = rgba[:, :, 3:]
        return ((rgba[:, :, :3] * alpha + 127) // 255).astype(np.uint8)
    return np.array(image.convert("RGB"))  # a writable copy: torch.from_numpy warns on PIL's read-only buffer


def to_grey_array(image: Image.Image) -> np.ndarray:
    """A writable H×W×1 uint8 grey array of an opened PIL image, by the rules in the module docstring."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        grey = numeric_to_8_bits(np.asarray(image))
    elif has_transparency(image):
        if image.mode == "La":  # premultiplied grey: PIL converts it only to LA
            image = image.convert("LA")
        luma_alpha = np.asarray(image.convert("LA"), dtype=np.uint32)
        grey = ((luma_alpha[:, :, 0] * luma_alpha[:, :, 1] + 127) // 255).astype(np.uint8)
    else:
        grey = np.array(image.convert("L"))
    return grey[:, :, None]


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode `path` to H×W×3 uint8 RGB; PIL's errors (decompression-bomb guard included) propagate to the caller,
    and `NotARegularFileError` for a FIFO or device, which is never read (the read could block forever)."""
    with open_regular_file(path) as stream, Image.open(stream) as image:
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


class ChannelCountError(ValueError):
    """A file's band count differs from the channels the dataset reads, or its format cannot hold them: a setting
    that does not fit the data, not a damaged file, so datasets raise it rather than skip the file."""


BoxDrawer = Callable[[int, int], tuple[int, int, int, int]]


def source_name(source: str | Path | BinaryIO) -> str:
    return str(source) if isinstance(source, str | Path) else str(getattr(source, "name", "image"))


def resize_box(
    pixels: torch.Tensor, upright: tuple[int, int], box: tuple[int, int, int, int], size: int
) -> torch.Tensor:
    """The `box` of the upright (width, height) image, found in the C×H×W `pixels` (possibly decoded smaller),
    resized to C×size×size (bilinear, antialiased)."""
    x_scale, y_scale = pixels.shape[2] / upright[0], pixels.shape[1] / upright[1]
    left, top = round(box[0] * x_scale), round(box[1] * y_scale)
    width = max(1, min(round(box[2] * x_scale), pixels.shape[2]) - left)
    height = max(1, min(round(box[3] * y_scale), pixels.shape[1]) - top)
    return TF.resized_crop(pixels, top, left, height, width, [size, size], antialias=True)


def read_rgb_crop(source: str | Path | BinaryIO, size: int, draw_box: BoxDrawer) -> torch.Tensor:
    """The box `draw_box(width, height)` picks in the upright image, resized to a 3×size×size uint8 tensor
    (bilinear, antialiased); pixels follow the module's rules. JPEGs decode only at the resolution the box needs.
    PIL's errors (decompression-bomb guard included) propagate to the caller."""
    return read_pil_crop(source, size, draw_box, to_rgb_array)


def read_grey_crop(source: str | Path | BinaryIO, size: int, draw_box: BoxDrawer) -> torch.Tensor:
    """`read_rgb_crop` as one grey channel: a 1×size×size uint8 tensor (`to_grey_array`)."""
    return read_pil_crop(source, size, draw_box, to_grey_array)


def read_bands(source: str | Path | BinaryIO) -> np.ndarray:
    """A TIFF's first image as an H×W×C array of its own sample type: samples per pixel, or one plane per band
    (any one axis besides Y and X holds the bands; none: one band). Raises ChannelCountError for other files."""
    try:
        with tifffile.TiffFile(source) as tiff:
            series = tiff.series[0]
            axes, values = series.axes, series.asarray()
    except tifffile.TiffFileError as error:
        raise ChannelCountError(
            f"{source_name(source)}: a dataset of other than 1 or 3 channels reads multi-band TIFFs ({error})"
        ) from error
    extra = [axis for axis in axes if axis not in "YX"]
    if len(extra) > 1 or "Y" not in axes or "X" not in axes:
        raise ChannelCountError(f"{source_name(source)}: TIFF axes {axes} {values.shape} are not one image of bands")
    if not extra:
        return values[:, :, None]
    return np.moveaxis(values, axes.index(extra[0]), -1)


def read_band_crop(source: str | Path | BinaryIO, size: int, draw_box: BoxDrawer, channels: int) -> torch.Tensor:
    """The box `draw_box(width, height)` picks in a TIFF of `channels` bands, resized to channels×size×size uint8
    (bilinear, antialiased; samples follow the module's rules). ChannelCountError when the file has other bands."""
    bands = read_bands(source)
    if bands.shape[2] != channels:
        raise ChannelCountError(
            f"{source_name(source)} has {bands.shape[2]} bands, but the dataset reads channels={channels}"
        )
    if bands.dtype != np.uint8:
        bands = numeric_to_8_bits(bands)
    pixels = torch.from_numpy(np.ascontiguousarray(bands)).permute(2, 0, 1)
    upright = (pixels.shape[2], pixels.shape[1])
    return resize_box(pixels, upright, draw_box(*upright), size)


def read_pil_crop(
    source: str | Path | BinaryIO, size: int, draw_box: BoxDrawer, to_array: Callable[[Image.Image], np.ndarray]
) -> torch.Tensor:
    """The crop of `read_rgb_crop`, with the decoded image turned into H×W×C pixels by `to_array`."""
    with Image.open(source) as image:
        stored = image.size
        transposed = image.getexif().get(ExifTags.Base.Orientation, 1) in TRANSPOSING_ORIENTATIONS
        upright = stored[::-1] if transposed else stored
        box = draw_box(*upright)
        needed = max(size / (box[2] - box[0]), size / (box[3] - box[1]))  # fraction of full resolution
        if image.format == "JPEG" and needed < 1:
            image.draft(None, (math.ceil(stored[0] * needed), math.ceil(stored[1] * needed)))
        image.load()
        pixels = torch.from_numpy(to_array(image)).permute(2, 0, 1)
    return resize_box(pixels, upright, box, size)


@dataclass(frozen=True)
class CropReader:
    """How a dataset reads one image, as a channels×size×size uint8 tensor: `crop='random'` draws a random-resized
    crop (`random_resized_box` with `scale`) for training; `'centre'` takes the centred square, as evaluation
    does. With `flip`, the result is mirrored left-right half the time. `channels`: 3 reads RGB, 1 grey, any
    other count a TIFF of that many bands (the module docstring)."""

    size: int
    scale: tuple[float, float] = (0.2, 1.0)
    flip: bool = True
    crop: str = "random"
    channels: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"image_size must be a positive integer, got {self.size!r}")
        low, high = self.scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {tuple(self.scale)}")
        if self.crop not in ("random", "centre"):
            raise ValueError(f"crop must be 'random' or 'centre', got {self.crop!r}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels < 1:
            raise ValueError(f"channels must be a positive integer (1: grey, 3: RGB), got {self.channels!r}")

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        if self.crop == "centre":
            return centre_box(width, height)
        return random_resized_box(width, height, tuple(self.scale))

    def __call__(self, source: str | Path | BinaryIO) -> torch.Tensor:
        """The crop of `source`; a path is read only when it is a regular file (`NotARegularFileError` for a FIFO
        or device: `open()` of a FIFO waits for a writer forever)."""
        if isinstance(source, str | Path):
            with open_regular_file(source) as stream:
                return self(stream)
        if self.channels == 3:
            tensor = read_rgb_crop(source, self.size, self.box)
        elif self.channels == 1:
            tensor = read_grey_crop(source, self.size, self.box)
        else:
            tensor = read_band_crop(source, self.size, self.box, self.channels)
        if self.flip and torch.rand(()) < 0.5:
            tensor = tensor.flip(-1)
        return tensor.contiguous()
