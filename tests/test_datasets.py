import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from PIL import Image
from torch.utils.data import DataLoader

from hiermae.data.datasets import FashionMNIST, ImageFolder
from hiermae.data.shards import ImageShards
from hiermae.engine.training import build_config

PRETRAIN_CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "pretrain").glob("*.py"))


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


def test_image_folder_skips_and_counts_bad_files_when_read(messy_folder):
    dataset = ImageFolder(str(messy_folder), image_size=32)
    assert len(dataset) == 6  # listed, not opened: bad files are found when read
    assert dataset.metainfo["classes"] == ("cats", "dogs")
    items = [dataset[index] for index in range(len(dataset))]
    for item in items:
        assert item["inputs"].shape == (3, 32, 32) and item["inputs"].dtype == torch.uint8
    read = {dataset.path(item["data_samples"]["index"]).name for item in items}
    assert read == {"deep.png", "grey.png", "rgb.jpg", "rgba.png"}
    assert sorted(Path(path).name for path, _ in dataset.skipped) == ["corrupt.jpg", "truncated.jpg"]
    assert dataset.skipped_count == 2
    labels = {dataset.path(i).name: dataset[i]["data_samples"]["label"] for i in range(len(dataset))}
    assert labels["rgb.jpg"] == 0 and labels["deep.png"] == 1


def test_skips_are_counted_once_across_data_loader_workers(messy_folder):
    dataset = ImageFolder(str(messy_folder), image_size=32)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=pseudo_collate)
    assert sum(len(batch["inputs"]) for batch in loader) == 6
    assert dataset.skipped_count == 2 and dataset.skipped == []  # the workers' counts reach the main process


def test_a_file_broken_after_listing_is_replaced_and_counted(messy_folder):
    dataset = ImageFolder(str(messy_folder), image_size=32)
    broken = dataset.path(0)
    broken.write_bytes(b"garbage")
    item = dataset[0]
    assert item["data_samples"]["index"] == 1
    assert dataset.skipped[-1][0] == str(broken) and "UnidentifiedImageError" in dataset.skipped[-1][1]


def test_decompression_bomb_is_skipped_counted_and_named(tmp_path):
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # 400 Mpx > twice PIL's limit, 50 kB on disk
    Image.new("RGB", (40, 40), (9, 99, 199)).save(tmp_path / "fine.png")
    dataset = ImageFolder(str(tmp_path), image_size=32)
    item = dataset[0]
    assert dataset.path(item["data_samples"]["index"]).name == "fine.png"
    assert (item["inputs"] == torch.tensor([9, 99, 199], dtype=torch.uint8)[:, None, None]).all()
    (path, why), = dataset.skipped
    assert path.endswith("bomb.png") and "DecompressionBombError" in why and dataset.skipped_count == 1


def test_every_mode_survives_the_dataset_with_its_colour(tmp_path):
    colours = {"L": 77, "LA": (77, 255), "P": 3, "RGB": (10, 200, 30), "RGBA": (10, 200, 30, 255), "I;16": 257 * 40}
    for mode, colour in colours.items():
        image = Image.new(mode, (48, 40), colour)
        if mode == "P":
            image.putpalette([0, 0, 0] * 3 + [250, 120, 5])
        image.save(tmp_path / f"{mode.replace(';', '')}.png")
    dataset = ImageFolder(str(tmp_path), image_size=32)
    expected = {"L": (77,) * 3, "LA": (77,) * 3, "P": (250, 120, 5), "RGB": (10, 200, 30), "RGBA": (10, 200, 30),
                "I16": (40,) * 3}  # fmt: skip
    for index in range(len(dataset)):
        pixels = dataset[index]["inputs"]
        colour = expected[dataset.path(index).stem]
        assert (pixels == torch.tensor(colour, dtype=torch.uint8)[:, None, None]).all(), dataset.path(index)


def test_empty_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match="no readable images"):
        ImageFolder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(str(tmp_path / "missing"))


def test_training_configs_cache_the_file_list_in_the_work_dir(tmp_path):
    cfg = build_config("configs/pretrain/hiermae_resnet50_224px_imagefolder.py", work_dir=str(tmp_path))
    assert cfg.train_dataloader.dataset.file_list == str(tmp_path / "file_lists" / "train_dataloader.bin")
    options = {"train_dataloader.dataset.file_list": None}
    config = "configs/pretrain/hiermae_resnet50_224px_imagefolder.py"
    cfg = build_config(config, work_dir=str(tmp_path), cfg_options=options)
    assert cfg.train_dataloader.dataset.file_list is None  # an explicit None turns the cache off


@pytest.mark.parametrize("config", PRETRAIN_CONFIGS, ids=[path.stem for path in PRETRAIN_CONFIGS])
def test_pretraining_flips_only_in_the_resumable_preprocessor(config):
    cfg = Config.fromfile(config)
    preprocessor = cfg.model.data_preprocessor
    assert preprocessor.type == "MIMDataPreprocessor" and preprocessor.flip_prob == 0.5
    assert not cfg.train_dataloader.dataset.get("flip", False)


def test_datasets_do_not_flip_unless_asked():
    """Pretraining flips in MIMDataPreprocessor (seeded by sample and iteration); a dataset's own flip, drawn from
    the worker's RNG, would differ after a resume. Only ImageFolder keeps one, off by default, for fine-tuning."""
    assert inspect.signature(ImageFolder).parameters["flip"].default is False
    assert "flip" not in inspect.signature(FashionMNIST).parameters
    assert "flip" not in inspect.signature(ImageShards).parameters
