"""Labelled images for fine-tuning and probing: Fashion-MNIST (whole splits or fixed stratified subsets) and a
user's folder with one sub-folder per class, with the training augmentation (random-resized crop, flip).

Items keep the layout of `hiermae.data.datasets`: `{'inputs': uint8 C×S×S, 'data_samples': {'index', 'label'}}`.
"""

from collections.abc import Sequence

import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset
from torchvision.transforms import v2

from hiermae.data import FashionMNIST, ImageFolder

SUBSETS = ("all", "labelled", "validation")


def members_by_class(labels: Sequence[int], exclude: Sequence[int] = ()) -> dict[int, list[int]]:
    """The indices of each label, in order, classes sorted; indices in `exclude` are left out."""
    excluded = set(exclude)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        if index not in excluded:
            by_class.setdefault(int(label), []).append(index)
    return dict(sorted(by_class.items()))


def stratified_indices(labels: Sequence[int], size: int, seed: int = 0, exclude: Sequence[int] = ()) -> list[int]:
    """`size` indices of `labels` (not in `exclude`), as equal per class as the counts allow, drawn with `seed`.

    Classes take turns in a seeded order, so 1000 of Fashion-MNIST's 10 classes are exactly 100 each. Sorted.
    """
    by_class = members_by_class(labels, exclude)
    available = sum(len(members) for members in by_class.values())
    if not 0 < size <= available:
        raise ValueError(f"cannot draw {size} labelled images from {available} available")
    generator = torch.Generator().manual_seed(seed)
    shuffled = [
        [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
        for members in by_class.values()
    ]
    turns = [shuffled[i] for i in torch.randperm(len(shuffled), generator=generator).tolist()]
    chosen, depth = [], 0
    while len(chosen) < size:
        chosen += [members[depth] for members in turns if depth < len(members)][: size - len(chosen)]
        depth += 1
    return sorted(chosen)


def holdout_indices(labels: Sequence[int], fraction: float, seed: int = 0) -> list[int]:
    """A stratified held-out part of `labels`: `fraction` of each class (at least one image of every class that has
    two or more), drawn with `seed`. Sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    held = []
    for members in members_by_class(labels).values():
        count = min(len(members) - 1, max(1, round(len(members) * fraction)))
        held += [members[i] for i in torch.randperm(len(members), generator=generator)[:count].tolist()]
    return sorted(held)


def training_augmentation(image_size: int, crop_scale: tuple[float, float]) -> v2.Compose:
    """Random-resized crop (area fraction in `crop_scale`) back to `image_size`, then a horizontal flip half the
    time: the augmentation MAE, SimMIM and SparK fine-tune with (without their RandAugment and mixing)."""
    return v2.Compose([v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True), v2.RandomHorizontalFlip()])


@DATASETS.register_module()
class LabelledFashionMNIST(Dataset):
    """Fashion-MNIST for classification: a whole split, or a fixed stratified subset of the training split.

    `subset='labelled'` is the low-label regime's `labelled_size` training images (the same images for every seed
    and run, drawn with `subset_seed`); `subset='validation'` is `validation_size` other training images for
    choosing settings without touching the test split. `augment` adds the random-resized crop and flip.
    """

    def __init__(
        self,
        split: str = "train",
        image_size: int = 96,
        subset: str = "all",
        labelled_size: int = 1000,
        validation_size: int = 2000,
        subset_seed: int = 0,
        augment: bool = False,
        crop_scale: tuple[float, float] = (0.35, 1.0),
        limit: int | None = None,
        channels: int = 3,
    ) -> None:
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        if subset != "all" and split != "train":
            raise ValueError(f"the {subset!r} subset is drawn from the training split, not {split!r}")
        self.images = FashionMNIST(split=split, image_size=image_size, limit=limit, channels=channels)
        labels = self.images.labels.tolist()
        labelled = stratified_indices(labels, labelled_size, subset_seed) if subset != "all" else []
        if subset == "labelled":
            self.indices = labelled
        elif subset == "validation":
            self.indices = stratified_indices(labels, validation_size, subset_seed + 1, exclude=labelled)
        else:
            self.indices = list(range(len(labels)))
        self.transform = training_augmentation(image_size, tuple(crop_scale)) if augment else None
        self.metainfo = self.images.metainfo

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        item = self.images[self.indices[index]]
        if self.transform is not None:
            item["inputs"] = self.transform(item["inputs"]).contiguous()
        return item


@DATASETS.register_module()
class LabelledImageFolder(Dataset):
    """A user's labelled images: one sub-folder per class under `root` (read by `hiermae.data.datasets.ImageFolder`,
    which skips and counts unreadable files). An unreadable file's place is taken by another file of the same part,
    never of the other one, and the item names the file read, so a metric can count each image once;
    `skipped_count` is how many of the part's files were found unreadable.

    `part='train'` / `'val'` split one folder into the rest and a stratified held-out `val_fraction` (fixed by
    `split_seed`); `'all'` takes every image (for a separate validation folder). With `augment` an image is
    random-resized-cropped and flipped; without, resized on its short side and centre-cropped to `image_size`.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 224,
        part: str = "all",
        val_fraction: float = 0.2,
        split_seed: int = 0,
        augment: bool = False,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        channels: int = 3,
    ) -> None:
        if part not in ("all", "train", "val"):
            raise ValueError(f"part must be 'all', 'train' or 'val', got {part!r}")
        crop = "random" if augment else "centre"  # centre: short side resized to image_size, centre-cropped
        self.folder = ImageFolder(
            root, image_size=image_size, scale=tuple(crop_scale), flip=augment, crop=crop, channels=channels
        )
        labels = [int(label) for label in self.folder.labels]
        loose = labels.count(-1)
        if loose:
            raise ValueError(
                f"{root}: {loose} images lie directly in the folder; a labelled folder needs one sub-folder per class"
            )
        classes = self.folder.metainfo["classes"]
        if len(classes) < 2:
            raise ValueError(f"{root}: found {len(classes)} class sub-folder(s); classification needs at least two")
        self.indices = list(range(len(labels)))
        if part != "all":
            held = set(holdout_indices(labels, val_fraction, split_seed))
            self.indices = [i for i in self.indices if (i in held) == (part == "val")]
        self.metainfo = self.folder.metainfo

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.folder.first_readable(self.indices, index)

    @property
    def skipped_count(self) -> int:
        """Files of this part found unreadable so far (this folder reads no file of another part)."""
        return self.folder.skipped_count
