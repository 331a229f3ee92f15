"""Every mode and bit depth PIL opens arrives as the right 8-bit RGB pixels (rules in hiermae/images.py)."""

import numpy as np
import pytest
from PIL import ExifTags, Image

from hiermae.images import read_rgb

RAMP = np.arange(16, dtype=np.int64).reshape(4, 4)  # 16 distinct values per image


def grey_rgb(values: np.ndarray) -> np.ndarray:
    return np.repeat(values.astype(np.uint8)[:, :, None], 3, axis=2)


def case_1(tmp_path):
    bits = (RAMP % 2).astype(bool)
    Image.fromarray(bits).save(tmp_path / "a.png")
    return grey_rgb(bits * 255)


def case_l(tmp_path):
    Image.fromarray((RAMP * 17).astype(np.uint8), "L").save(tmp_path / "a.png")
    return grey_rgb(RAMP * 17)


def case_la(tmp_path):
    alpha = np.where(RAMP % 2 == 0, 255, 0).astype(np.uint8)
    Image.fromarray(np.stack([(RAMP * 17).astype(np.uint8), alpha], axis=2), "LA").save(tmp_path / "a.png")
    return grey_rgb(np.where(alpha == 255, RAMP * 17, 0))


def palette_image() -> tuple[Image.Image, np.ndarray]:
    palette = np.random.default_rng(0).integers(0, 256, (16, 3), dtype=np.uint8)
    image = Image.fromarray(RAMP.astype(np.uint8), "P")
    image.putpalette(palette.ravel().tolist())
    return image, palette[RAMP]


def case_p(tmp_path):
    image, expected = palette_image()
    image.save(tmp_path / "a.png")
    return expected


def case_p_transparency(tmp_path):
    image, expected = palette_image()
    image.save(tmp_path / "a.png", transparency=5)  # palette entry 5 is fully transparent
    expected[RAMP == 5] = 0
    return expected


def case_p_transparency_gif(tmp_path):
    image, expected = palette_image()
    image.save(tmp_path / "a.gif", transparency=3)
    expected[RAMP == 3] = 0
    return expected


def case_rgb(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(tmp_path / "a.png")
    return pixels


def case_rgb_with_transparent_colour(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    pixels[0, 0] = (10, 20, 30)
    Image.fromarray(pixels, "RGB").save(tmp_path / "a.png", transparency=(10, 20, 30))
    expected = pixels.copy()
    expected[(pixels == (10, 20, 30)).all(axis=2)] = 0
    return expected


def case_rgba(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (4, 4, 4), dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.png")
    alpha = pixels[:, :, 3:].astype(np.int64)
    return ((pixels[:, :, :3].astype(np.int64) * alpha + 127) // 255).astype(np.uint8)


def case_i16_png(tmp_path):
    values = RAMP * 4000 + 200  # 200 .. 60200: fractions that rounding and truncating map differently
    Image.fromarray(values.astype(np.uint16)).save(tmp_path / "a.png")
    return grey_rgb(np.rint(values * 255 / 65535))


def case_i16_big_endian_tiff(tmp_path):
    values = RAMP * 257
    Image.fromarray(values.astype(np.uint16)).convert("I").convert("I;16B").save(tmp_path / "a.tif")
    return grey_rgb(RAMP)


def case_i32_8bit_range_tiff(tmp_path):
    Image.fromarray((RAMP * 17).astype(np.int32), "I").save(tmp_path / "a.tif")
    return grey_rgb(RAMP * 17)


def case_i32_16bit_range_tiff(tmp_path):
    values = RAMP * 4369 - 4369  # one negative value, clipped to 0
    Image.fromarray(values.astype(np.int32), "I").save(tmp_path / "a.tif")
    return grey_rgb(np.rint(values.clip(0) * 255 / 65535))


def case_i32_wide_range_tiff(tmp_path):
    values = RAMP * 1_000_000
    Image.fromarray(values.astype(np.int32), "I").save(tmp_path / "a.tif")
    return grey_rgb(np.rint(values * 255 / values.max()))


def case_float_unit_range_tiff(tmp_path):
    values = RAMP / 15.0
    values_with_nan = values.copy()
    values_with_nan[0, 0] = np.nan
    Image.fromarray(values_with_nan.astype(np.float32), "F").save(tmp_path / "a.tif")
    return grey_rgb(np.rint(np.nan_to_num(values_with_nan.astype(np.float32), nan=0.0) * 255.0))


def case_float_byte_range_tiff(tmp_path):
    Image.fromarray((RAMP * 17.0).astype(np.float32), "F").save(tmp_path / "a.tif")
    return grey_rgb(RAMP * 17)


def case_cmyk_jpeg(tmp_path):
    # pure inks: no ink → white, full cyan → (0, 255, 255), full black → black; JPEG keeps flat areas exact
    block = np.zeros((16, 16, 4), dtype=np.uint8)
    block[:, 8:, 0] = 255
    block[8:, :, 3] = 255
    Image.fromarray(block, "CMYK").save(tmp_path / "a.jpg", quality=100)
    expected = np.full((16, 16, 3), 255, dtype=np.uint8)
    expected[:, 8:] = (0, 255, 255)
    expected[8:] = 0
    return expected


def case_cmyk_tiff(tmp_path):
    pixels = np.random.default_rng(4).integers(0, 256, (4, 4, 4), dtype=np.uint8)
    Image.fromarray(pixels, "CMYK").save(tmp_path / "a.tif")
    return np.asarray(Image.fromarray(pixels, "CMYK").convert("RGB"))  # PIL's own CMYK → RGB formula


def case_ycbcr_tiff(tmp_path):
    pixels = np.random.default_rng(5).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(pixels, "YCbCr").save(tmp_path / "a.tif")
    return np.asarray(Image.fromarray(pixels, "YCbCr").convert("RGB"))


def case_la_tiff(tmp_path):
    alpha = np.full((4, 4), 128, dtype=np.uint8)
    Image.fromarray(np.stack([np.full((4, 4), 200, np.uint8), alpha], axis=2), "LA").save(tmp_path / "a.tif")
    return grey_rgb(np.full((4, 4), (200 * 128 + 127) // 255))


def case_exif_rotated_jpeg(tmp_path):
    block = np.zeros((8, 16, 3), dtype=np.uint8)  # stored 16 wide, 8 high; left half white
    block[:, :8] = 255
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # viewers rotate it 90° clockwise: 8 wide, 16 high, top half white
    Image.fromarray(block).save(tmp_path / "a.jpg", exif=exif, quality=100)
    expected = np.zeros((16, 8, 3), dtype=np.uint8)
    expected[:8] = 255
    return expected


CASES = {name.removeprefix("case_"): function for name, function in dict(globals()).items() if name.startswith("case_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_mode_arrives_with_the_right_pixels(tmp_path, name):
    expected = CASES[name](tmp_path)
    (path,) = tmp_path.iterdir()
    pixels = read_rgb(path)
    assert pixels.dtype == np.uint8 and pixels.shape == expected.shape
    tolerance = 2 if path.suffix == ".jpg" else 0  # JPEG is lossy even at quality 100
    assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= tolerance


def test_the_cases_cover_the_modes_pil_writes(tmp_path):
    modes = set()
    for name, function in CASES.items():
        folder = tmp_path / name
        folder.mkdir()
        function(folder)
        with Image.open(next(folder.iterdir())) as image:
            modes.add(image.mode)
    assert {"1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B", "I", "F", "CMYK", "YCbCr"} <= modes
