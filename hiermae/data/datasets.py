"""Datasets registered with mmengine: Fashion-MNIST (the embedded default) and a folder of the user's images
(WebDataset shards: `hiermae.data.shards`).

Each item is `{'inputs': uint8 C×S×S tensor, 'data_samples': {'index': i, 'label': y}}` (C: the dataset's
`channels`, 3 by default); the index seeds the sample's mask (see `MaskedPretrainer.sample_seeds`).
"""

import gzip
import logging
import multiprocessing
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.dist import barrier, get_rank, get_world_size
from mmengine.logging import print_log
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from hiermae.data.file_list import IMAGE_EXTENSIONS, Listing, list_images
from hiermae.data.images import ChannelCountError, CropReader
from hiermae.utils import open_regular_file

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def read_idx(path: Path, header_bytes: int) -> np.ndarray:
    """Read the payload of a gzipped IDX file (images: 16 header bytes, labels: 8); only a regular file is opened."""
    with open_regular_file(path) as stream, gzip.open(stream, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=header_bytes)


@DATASETS.register_module()
class FashionMNIST(Dataset):
    """Fashion-MNIST (Xiao et al., 2017) from the Debian package `dataset-fashion-mnist`, at `image_size`, its grey
    value in each of `channels` channels (3: RGB, the comparison configs' setting; 1: grey as it is).

    Args:
        split: "train" (60 000 images) or "test" (10 000).
        image_size: side of the upsampled square images (a multiple of 32 for pretraining).
        limit: read only the first `limit` images (tests, smoke runs).
        data_root: the folder of the IDX files.
        channels: channels of each image (every one the grey value).
    """

    def __init__(
        self,
        split: str = "train",
        image_size: int = 64,
        limit: int | None = None,
        data_root: str = FASHION_MNIST_ROOT,
        channels: int = 3,
    ) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer (1: grey, 3: RGB), got {channels!r}")
        if split not in FASHION_MNIST_FILES:
            raise ValueError(f"Fashion-MNIST split must be one of {sorted(FASHION_MNIST_FILES)}, got {split!r}")
        image_file, label_file = (Path(data_root) / name for name in FASHION_MNIST_FILES[split])
        if not image_file.exists():
            raise FileNotFoundError(
                f"{image_file} is missing: install the Debian package dataset-fashion-mnist (make install does)"
            )
        images = read_idx(image_file, 16).reshape(-1, 28, 28)
        labels = read_idx(label_file, 8)
        count = len(labels) if limit is None else min(limit, len(labels))
        self.images = torch.from_numpy(images[:count].copy())
        self.labels = torch.from_numpy(labels[:count].astype(np.int64))
        self.image_size = image_size
        self.channels = channels
        self.metainfo = {"classes": FASHION_MNIST_CLASSES}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index][None, None].float()
        image = F.interpolate(image, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        image = image[0].clamp(0, 255).round().to(torch.uint8).expand(self.channels, -1, -1).contiguous()
        return {"inputs": image, "data_samples": {"index": index, "label": int(self.labels[index])}}


@DATASETS.register_module()
class ImageFolder(Dataset):
    """The user's images: a flat folder, or one top-level folder per class (deeper and symlinked folders included).

    Start-up only lists file names (see `hiermae.data.file_list`; `file_list` names a cache file, which `tools/train.py`
    puts in the work dir). A file is checked when it is read: one that cannot be decoded, PIL's decompression-bomb
    guard included, is replaced by the next readable file (of the same subset: `first_readable`), counted across
    data-loader workers and named in the log.
    Pixels follow `hiermae.data.images` for every mode and bit depth; crops are decoded at the resolution they need.
    `channels` picks the reader: 3 RGB, 1 grey (never through RGB), any other count multi-band TIFFs; a file of
    another band count raises `ChannelCountError` (a setting that does not fit the data is not skipped).
    `crop='random'` (training) draws random-resized crops of `scale`; `'centre'` takes the centred square
    (evaluation: the short side resized to `image_size`, then centre-cropped). `flip` mirrors half the images with
    the worker's RNG, for fine-tuning; pretraining leaves it off and flips in `MIMDataPreprocessor`, which draws each
    flip from the sample's seed, so a resumed run sees the same images.

    Args:
        root: the folder of images.
        image_size: side of the square crops.
        scale: area range of the random-resized crops, as a fraction of the image.
        flip: mirror half the images (fine-tuning only).
        file_list: a cache file for the listing (`tools/train.py` sets it in the work dir).
        crop: "random" (training) or "centre" (evaluation).
        channels: channels of each image (1: grey, 3: RGB, other: TIFF bands).
    """

    def __init__(
        self,
        root: str,
        image_size: int = 224,
        scale: tuple[float, float] = (0.2, 1.0),
        flip: bool = False,
        file_list: str | None = None,
        crop: str = "random",
        channels: int = 3,
    ) -> None:
        self.read = CropReader(image_size, tuple(scale), flip, crop, channels)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
        listing = shared_listing(self.root, Path(file_list) if file_list else None)
        problems = "".join(f"\n  {path}: {why}" for path, why in listing.problems[:10])
        if not len(listing.names):
            raise ValueError(
                f"image folder {root} has no readable images: no file ending in {', '.join(IMAGE_EXTENSIONS)}"
                f" ({len(listing.problems)} problems while listing){problems}"
            )
        self.names, self.labels = listing.names, listing.labels
        self.metainfo = {"classes": listing.classes}
        self.skipped: list[tuple[str, str]] = []  # what this process skipped; `skipped_count` covers all processes
        # shared with forked data-loader workers: a file found bad is flagged once, counted once, never read again
        self._bad = multiprocessing.Array("B", len(self.names))
        self._skipped_count = multiprocessing.Value("q", 0, lock=False)
        print_log(
            f"ImageFolder {root}: {len(self.names)} images in {len(listing.classes)} classes, listed in "
            f"{listing.seconds:.1f} s ({listing.source}); files are checked when read, unreadable ones skipped and "
            f"logged; {len(listing.problems)} problems while listing{problems}",
            "current",
        )

    def __len__(self) -> int:
        return len(self.names)

    def path(self, index: int) -> Path:
        return self.root / self.names[index]

    @property
    def skipped_count(self) -> int:
        """Distinct files found unreadable so far, by this process and every data-loader worker."""
        return self._skipped_count.value

    def _skip(self, position: int, error: Exception) -> None:
        path, why = self.path(position), f"{type(error).__name__}: {error}"
        self.skipped.append((str(path), why))
        with self._bad.get_lock():
            if self._bad[position]:  # another worker found it first
                return
            self._bad[position] = 1
            self._skipped_count.value += 1
            count = self._skipped_count.value
        print_log(f"skipped unreadable image {path} ({why}); {count} skipped so far", "current", logging.WARNING)

    def __getitem__(self, index: int) -> dict:
        return self.first_readable(range(len(self.names)), index)

    def first_readable(self, positions: Sequence[int], start: int) -> dict:
        """The item of `positions[start]`, or when that file is unreadable of the next readable one of `positions`
        (cyclically). A subset (a validation split) passes its own positions, so a stand-in never comes from
        outside it; the item's `index` is the file actually read."""
        for offset in range(len(positions)):
            position = positions[(start + offset) % len(positions)]
            if self._bad[position]:
                continue
            try:
                inputs = self.read(self.path(position))
            except ChannelCountError:
                raise  # the dataset's channels do not fit the data: a setting to fix, not a file to skip
            except Exception as error:  # any per-file failure, of any kind, must not stop a run
                self._skip(position, error)
                continue
            return {"inputs": inputs, "data_samples": {"index": position, "label": int(self.labels[position])}}
        raise RuntimeError(f"no image in {self.root} could be read ({len(positions)} tried)")


def shared_listing(root: Path, cache: Path | None) -> Listing:
    """`list_images`, with one walk for all ranks: rank 0 lists (and caches) first, the others then read its cache."""
    if cache is None or get_world_size() == 1:
        return list_images(root, cache)
    listing = list_images(root, cache) if get_rank() == 0 else None
    barrier()
    return listing or list_images(root, cache)


def place_file_list_caches(cfg: ConfigDict) -> None:
    """Give each ImageFolder dataloader of `cfg` without a `file_list` a cache file in the work dir."""
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        dataset = (cfg.get(loader) or {}).get("dataset")
        if dataset is not None and dataset.get("type") == "ImageFolder" and "file_list" not in dataset:
            dataset["file_list"] = str(Path(cfg.work_dir) / "file_lists" / f"{loader}.bin")
