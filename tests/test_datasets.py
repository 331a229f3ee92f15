import numpy as np
import pytest
import torch
from PIL import Image

from hiermae.datasets import FashionMNIST, ImageFolder, load_rgb


def test_fashion_mnist_reads_the_embedded_files():
    dataset = FashionMNIST(split="test", image_size=64, limit=50)
    assert len(dataset) == 50
    item = dataset[3]
    assert item["inputs"].shape == (3, 64, 64) and item["inputs"].dtype == torch.uint8
    assert item["data_samples"] == {"index": 3, "label": int(dataset.labels[3])}
    assert 0 <= item["data_samples"]["label"] < 10 and item["inputs"].float().std() > 10
    assert len(FashionMNIST(split="train", image_size=32)) == 60000


def test_fashion_mnist_errors_are_named(tmp_path):
    with pytest.raises(ValueError, match="split"):
        FashionMNIST(split="val")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        FashionMNIST(data_root=str(tmp_path))


@pytest.fixture
def messy_folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "cats" / "rgb.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(tmp_path / "cats" / "grey.png")
    Image.fromarray(rng.integers(0, 255, (30, 30, 4), dtype=np.uint8), "RGBA").save(tmp_path / "dogs" / "rgba.png")
    Image.fromarray(rng.integers(0, 65535, (30, 30), dtype=np.uint16)).save(tmp_path / "dogs" / "deep.png")
    (tmp_path / "dogs" / "corrupt.jpg").write_bytes(b"not an image at all")
    good = tmp_path / "cats" / "rgb.jpg"
    (tmp_path / "cats" / "truncated.jpg").write_bytes(good.read_bytes()[:100])
    return tmp_path


def test_image_folder_skips_and_counts_bad_files(messy_folder):
    dataset = ImageFolder(str(messy_folder), image_size=32)
    names = sorted(p.name for p in dataset.files)
    assert names == ["deep.png", "grey.png", "rgb.jpg", "rgba.png"]
    assert sorted(p.split("/")[-1] for p, _ in dataset.skipped) == ["corrupt.jpg", "truncated.jpg"]
    assert dataset.metainfo["classes"] == ("cats", "dogs")
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["inputs"].shape == (3, 32, 32) and item["inputs"].dtype == torch.uint8


def test_sixteen_bit_images_keep_their_range(messy_folder):
    image = np.asarray(load_rgb(messy_folder / "dogs" / "deep.png"))
    assert image.dtype == np.uint8 and image.shape == (30, 30, 3) and image.max() > 200


def test_a_file_broken_after_the_scan_is_replaced_and_counted(messy_folder):
    dataset = ImageFolder(str(messy_folder), image_size=32)
    broken = dataset.files[0]
    broken.write_bytes(b"garbage")
    item = dataset[0]
    assert item["data_samples"]["index"] == 1
    assert dataset.skipped[-1][0] == str(broken)


def test_empty_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match="no readable images"):
        ImageFolder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(str(tmp_path / "missing"))
