"""Any image file PIL can open, as 8-bit RGB pixels: every mode and bit depth mapped to 0–255 by a stated rule.

- Camera orientation (EXIF) is applied, so pixels are the ones a viewer shows.
- 16-bit integers (`I;16*`) scale by 255/65535, rounded (65535 → 255, 257 → 1).
- 32-bit integers (`I`) keep their values when they all lie in 0–255, scale like 16-bit data when they lie in
  0–65535 (16-bit PNGs open as `I` in some Pillow versions), and otherwise scale by 255/max; negatives clip to 0.
- Floats (`F`) are read as 0–1 when their maximum is at most 1, else by the integer rule; NaN counts as 0.
- Transparency (alpha channels, a palette or grey/RGB colour marked transparent) is composited over black, so a
  fully transparent pixel is black whatever colour it stores.
- Everything else (1-bit, L, P, RGB, RGBX, CMYK, YCbCr, LAB, ...) converts with PIL's own colour conversion.
"""

from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
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
