"""Datasets registered with mmengine: Fashion-MNIST (the embedded default) and a folder of the user's images.

Each item is `{'inputs': uint8 3×S×S tensor, 'data_samples': {'index': i, 'label': y}}`; the index seeds the
sample's mask (see `MaskedPretrainer.sample_seeds`).
"""

import gzip
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.registry import DATASETS
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import v2

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def read_idx(path: Path, header_bytes: int) -> np.ndarray:
    """Read the payload of a gzipped IDX file (images: 16 header bytes, labels: 8)."""
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=header_bytes)


@DATASETS.register_module()
class FashionMNIST(Dataset):
    """Fashion-MNIST (Xiao et al., 2017) from the Debian package `dataset-fashion-mnist`, as RGB at `image_size`."""

    def __init__(
        self,
        split: str = "train",
        image_size: int = 64,
        limit: int | None = None,
        data_root: str = FASHION_MNIST_ROOT,
        flip: bool = False,
    ) -> None:
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
        self.flip = flip
        self.metainfo = {"classes": FASHION_MNIST_CLASSES}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index][None, None].float()
        image = F.interpolate(image, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        image = image[0].clamp(0, 255).round().to(torch.uint8).expand(3, -1, -1).contiguous()
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return {"inputs": image, "data_samples": {"index": index, "label": int(self.labels[index])}}


def load_rgb(path: Path) -> Image.Image:
    """Open any image as 8-bit RGB: grey, palette, RGBA (composited on black) and 16-bit files included."""
    with Image.open(path) as image:
        image.load()
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float64)
            peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
            image = Image.fromarray((array / peak * 255).clip(0, 255).astype(np.uint8))
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")


@DATASETS.register_module()
class ImageFolder(Dataset):
    """The user's images: a flat folder or one sub-folder per class. Unreadable files are skipped and counted.

    Files are checked once when the dataset is built; a file that still fails later is replaced by the next
    readable one and counted, so a bad file never stops a run.
    """

    def __init__(
        self, root: str, image_size: int = 224, scale: tuple[float, float] = (0.2, 1.0), flip: bool = True
    ) -> None:
        root_path = Path(root)
        if not root_path.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        files = sorted(p for p in root_path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        class_names = sorted({p.parent.name for p in files if p.parent != root_path})
        self.skipped: list[tuple[str, str]] = []
        self.files = [p for p in files if self._readable(p)]
        if not self.files:
            raise ValueError(f"image folder {root} has no readable images ({len(self.skipped)} skipped)")
        self.labels = [class_names.index(p.parent.name) if p.parent != root_path else -1 for p in self.files]
        self.metainfo = {"classes": tuple(class_names)}
        steps = [v2.RandomResizedCrop(image_size, scale=scale, antialias=True)]
        self.transform = v2.Compose(steps + ([v2.RandomHorizontalFlip()] if flip else []))
        message = f"ImageFolder {root}: {len(self.files)} images, {len(self.skipped)} skipped as unreadable"
        print_log(message + "".join(f"\n  skipped {name}: {why}" for name, why in self.skipped[:10]), "current")

    def _readable(self, path: Path) -> bool:
        try:
            with Image.open(path) as image:
                image.verify()
            return True
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
            self.skipped.append((str(path), f"{type(error).__name__}: {error}"))
            return False

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        for offset in range(len(self.files)):
            position = (index + offset) % len(self.files)
            try:
                image = load_rgb(self.files[position])
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
                self.skipped.append((str(self.files[position]), f"{type(error).__name__}: {error}"))
                print_log(f"skipping unreadable image {self.files[position]}: {error}", "current", logging.WARNING)
                continue
            tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
            sample = {"index": position, "label": self.labels[position]}
            return {"inputs": self.transform(tensor).contiguous(), "data_samples": sample}
        raise RuntimeError("no image in the folder could be read")
