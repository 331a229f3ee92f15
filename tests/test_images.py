"""Every mode and bit depth PIL opens arrives as the right 8-bit RGB pixels (rules in hiermae/data/images.py)."""

import functools

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image
from torchvision.transforms.v2 import functional as TF

from hiermae.data.images import CropReader, random_resized_box, read_rgb, read_rgb_crop

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


def test_random_resized_boxes_stay_inside_with_the_asked_area_and_shape():
    torch.manual_seed(0)
    for width, height in ((500, 375), (375, 500), (224, 224)):
        for _ in range(200):
            left, top, right, bottom = random_resized_box(width, height, (0.2, 1.0))
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            box_width, box_height = right - left, bottom - top
            assert 0.2 * 0.97 <= box_width * box_height / (width * height) <= 1.0
            assert 3 / 4 * 0.97 <= box_width / box_height <= 4 / 3 * 1.03
    assert random_resized_box(1000, 10, (0.9, 1.0)) == (493, 0, 506, 10)  # no fit: centred, widest allowed ratio


def smooth_photo(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width] / 60.0
    return (np.stack([np.sin(x), np.cos(y), np.sin(x + y)], axis=2) * 100 + 128).astype(np.uint8)


def test_a_reduced_jpeg_decode_gives_the_full_decode_crop(tmp_path):
    Image.fromarray(smooth_photo(2000, 1500)).save(tmp_path / "big.jpg", quality=95)
    for seed in range(5):
        torch.manual_seed(seed)
        draw = functools.partial(random_resized_box, scale=(0.05, 0.3))  # 300-1000 px boxes: 1/2 to 1/4 scale
        reduced = read_rgb_crop(tmp_path / "big.jpg", 224, draw)
        torch.manual_seed(seed)
        box = random_resized_box(2000, 1500, (0.05, 0.3))
        left, top, right, bottom = box
        full = torch.from_numpy(read_rgb(tmp_path / "big.jpg")).permute(2, 0, 1)
        full = TF.resized_crop(full, top, left, bottom - top, right - left, [224, 224], antialias=True)
        assert reduced.shape == (3, 224, 224) and (reduced.int() - full.int()).abs().float().mean() < 2.0


def test_crops_are_taken_from_the_upright_image(tmp_path):
    case_exif_rotated_jpeg(tmp_path)  # upright: 8 wide, 16 high, top half white
    whole = read_rgb_crop(tmp_path / "a.jpg", 16, lambda width, height: (0, 0, width, height))
    assert (whole[:, :7] > 200).all() and (whole[:, 9:] < 50).all()
    centre = CropReader(8, flip=False, crop="centre")(tmp_path / "a.jpg")  # the middle 8×8 of the upright 8×16
    assert (centre[:, :3] > 200).all() and (centre[:, 5:] < 50).all()


def test_the_centre_crop_is_the_short_side_resize_and_centre_crop(tmp_path):
    Image.fromarray(smooth_photo(600, 400)).save(tmp_path / "a.png")
    reference = TF.center_crop(TF.resize(torch.from_numpy(smooth_photo(600, 400)).permute(2, 0, 1), 100), 100)
    centre = CropReader(100, flip=False, crop="centre")(tmp_path / "a.png")
    assert (centre.int() - reference.int()).abs().max() <= 1


@pytest.mark.parametrize(
    ("size", "scale", "crop"),
    [(0, (0.2, 1.0), "random"), (32, (0.0, 1.0), "random"), (32, (0.5, 0.2), "random"), (32, (0.2, 1.5), "random"),
     (32, (0.2, 1.0), "center")],
)  # fmt: skip
def test_bad_crop_settings_are_named(size, scale, crop):
    with pytest.raises(ValueError, match="image_size must be|scale must be|crop must be"):
        CropReader(size, scale, crop=crop)
