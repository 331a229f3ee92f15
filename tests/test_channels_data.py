"""Grey and multi-band images in the data path: every grey PIL mode read as one channel, multi-band TIFFs with
tifffile, a named error for a file of another band count, and C carried by Fashion-MNIST, image folders and shards
(rules in hiermae/data/images.py)."""

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from hiermae.data.datasets import FashionMNIST, ImageFolder
from hiermae.data.images import ChannelCountError, CropReader
from hiermae.data.shards import ImageShards, pack_folder

RAMP = np.arange(16, dtype=np.int64).reshape(4, 4)  # 16 distinct values per image


def read_whole(path, channels: int) -> torch.Tensor:
    """The image at its own 4×4 size: no crop, no resize, no flip."""
    return CropReader(4, flip=False, crop="centre", channels=channels)(path)


@pytest.mark.parametrize(
    ("mode", "stored", "expected"),
    [
        ("L", RAMP * 17, RAMP * 17),
        ("I;16", RAMP * 4369, RAMP * 17),  # 16-bit: v · 255/65535, so 65535 → 255
        ("I;16B", RAMP * 4369, RAMP * 17),
        ("I", RAMP * 17, RAMP * 17),  # 32-bit integers within 0-255 keep their values
        ("F", RAMP / 15.0, RAMP * 17),  # floats of 0-1
    ],
)
def test_every_grey_mode_reads_as_one_channel_with_its_values(tmp_path, mode, stored, expected) -> None:
    if mode == "I;16B":
        image = Image.frombytes(mode, (4, 4), stored.astype(">u2").tobytes())
    elif mode == "I;16":
        image = Image.fromarray(stored.astype(np.uint16))
    elif mode == "I":
        image = Image.fromarray(stored.astype(np.int32))
    elif mode == "F":
        image = Image.fromarray(stored.astype(np.float32))
    else:
        image = Image.fromarray(stored.astype(np.uint8), mode)
    assert image.mode == mode
    path = tmp_path / "a.tif"
    image.save(path)
    pixels = read_whole(path, 1)
    assert pixels.shape == (1, 4, 4) and pixels.dtype == torch.uint8
    assert torch.equal(pixels[0], torch.from_numpy(expected.astype(np.uint8)))


def test_a_16_bit_png_keeps_more_than_8_bits_of_range_and_a_colour_file_becomes_luma(tmp_path) -> None:
    Image.fromarray((RAMP * 4369).astype(np.uint16)).save(tmp_path / "deep.png")
    assert torch.equal(read_whole(tmp_path / "deep.png", 1)[0], torch.from_numpy((RAMP * 17).astype(np.uint8)))
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "red.png")
    assert torch.all(read_whole(tmp_path / "red.png", 1) == round(200 * 299 / 1000))  # PIL's luma of pure red


@pytest.mark.parametrize("layout", ["samples", "planes"])
def test_four_band_tiffs_read_in_either_layout_with_one_scale_for_all_bands(tmp_path, layout) -> None:
    bands = np.stack([RAMP * 4369, RAMP * 2000, np.full((4, 4), 65535), np.zeros((4, 4))], axis=-1).astype(np.uint16)
    if layout == "samples":
        tifffile.imwrite(tmp_path / "a.tif", bands)
    else:
        planes = bands.transpose(2, 0, 1)
        tifffile.imwrite(tmp_path / "a.tif", planes, photometric="minisblack", planarconfig="separate")
    pixels = read_whole(tmp_path / "a.tif", 4)
    expected = np.rint(bands.astype(np.float64) * 255 / 65535).astype(np.uint8).transpose(2, 0, 1)
    assert pixels.shape == (4, 4, 4) and torch.equal(pixels, torch.from_numpy(expected))


def test_a_file_of_another_band_count_is_a_named_error_not_a_skipped_file(tmp_path) -> None:
    folder = tmp_path / "bands"
    folder.mkdir()
    tifffile.imwrite(folder / "four.tif", np.zeros((32, 32, 4), np.uint8))
    tifffile.imwrite(folder / "three.tif", np.zeros((32, 32, 3), np.uint8))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "zz.png")
    dataset = ImageFolder(str(folder), image_size=32, channels=4)
    assert dataset[0]["inputs"].shape == (4, 32, 32)
    with pytest.raises(ChannelCountError, match=r"three\.tif has 3 bands, but the dataset reads channels=4"):
        dataset[1]
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "zz.png")
    with pytest.raises(ChannelCountError, match=r"zz\.png: .*reads multi-band TIFFs"):
        dataset[2]
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        ImageFolder(str(folder), image_size=32, channels=0)


def test_fashion_mnist_reads_one_channel_when_asked_and_three_by_default() -> None:
    grey, rgb = FashionMNIST(image_size=32, limit=2, channels=1), FashionMNIST(image_size=32, limit=2)
    assert grey[0]["inputs"].shape == (1, 32, 32) and rgb[0]["inputs"].shape == (3, 32, 32)
    assert torch.equal(rgb[0]["inputs"], grey[0]["inputs"].expand(3, -1, -1))


def test_shards_carry_the_channel_count_of_their_manifest(tmp_path) -> None:
    folder = tmp_path / "bands"
    folder.mkdir()
    for index in range(3):
        tifffile.imwrite(folder / f"{index}.tif", np.full((32, 32, 4), index, np.uint8))
    pack_folder(folder, tmp_path / "shards", samples_per_shard=2, channels=4)
    assert json.loads((tmp_path / "shards/manifest.json").read_text())["channels"] == 4
    shards = ImageShards(str(tmp_path / "shards"), image_size=32, repeat=False)
    assert shards.channels == 4 and {item["inputs"].shape for item in shards} == {(4, 32, 32)}
    with pytest.raises(ValueError, match="holds 4-channel images, not channels=1"):
        ImageShards(str(tmp_path / "shards"), image_size=32, channels=1)
    pack_folder(folder, tmp_path / "old", samples_per_shard=2)  # a manifest without channels: 3, as before
    assert ImageShards(str(tmp_path / "old"), image_size=32).channels == 3
