"""Which labelled images probing and fine-tuning train and evaluate on: Fashion-MNIST splits and subsets, or a
user's class folders, as dataset configs with their class count and pixel normalisation."""

from dataclasses import dataclass, field

from hiermae.downstream.labelled_data import LabelledImageFolder

FASHION_MNIST_NORMALIZATION = dict(mean=[72.9] * 3, std=[90.0] * 3)  # as in the pretraining configs


@dataclass(frozen=True)
class ClassificationData:
    """Dataset configs (without their image size) for training and evaluation, the number of classes and the pixel
    normalisation."""

    train: dict
    val: dict
    num_classes: int
    normalization: dict = field(default_factory=lambda: dict(FASHION_MNIST_NORMALIZATION))

    def at(self, image_size: int, augment: bool = True, channels: int = 3) -> tuple[dict, dict]:
        """The training and evaluation dataset configs at `image_size`, read with `channels` channels
        (`augment=False`: training data as is)."""
        train = dict(self.train, image_size=image_size, channels=channels)
        if not augment:
            train["augment"] = False
        return train, dict(self.val, image_size=image_size, channels=channels)

    def normalization_for(self, channels: int) -> dict:
        """`normalization` for `channels` channels: as stated when it has that many values, otherwise the mean of
        its values for every channel (one grey channel of an RGB statistic, or bands without their own)."""
        mean, std = list(self.normalization["mean"]), list(self.normalization["std"])
        if len(mean) == channels:
            return dict(mean=mean, std=std)
        return dict(mean=[sum(mean) / len(mean)] * channels, std=[sum(std) / len(std)] * channels)


def fashion_mnist_data(
    crop_scale: tuple[float, float],
    *,
    labelled: int | None = None,
    evaluate_on: str = "test",
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> ClassificationData:
    """Fashion-MNIST: train on the training images (the first `train_limit`), or on the fixed stratified
    `labelled` subset of them; evaluate on the test images (the first `test_limit`), or (`evaluate_on=
    'validation'`) on 2000 other training images, to choose settings without looking at the test split."""
    if evaluate_on not in ("test", "validation"):
        raise ValueError(f"evaluate_on must be 'test' or 'validation', got {evaluate_on!r}")
    if evaluate_on == "validation" and labelled is None:
        raise ValueError("the validation split is held out of the labelled subset: give `labelled` with it")
    common = dict(type="LabelledFashionMNIST", labelled_size=labelled or 1000)
    subset = "all" if labelled is None else "labelled"
    train = dict(common, split="train", subset=subset, limit=train_limit, augment=True, crop_scale=list(crop_scale))
    if evaluate_on == "test":
        val = dict(common, split="test", limit=test_limit)
    else:
        val = dict(common, split="train", subset="validation", limit=train_limit)
    return ClassificationData(train, val, num_classes=10)


def image_folder_data(
    root: str, crop_scale: tuple[float, float], val_root: str | None = None, val_fraction: float = 0.2
) -> ClassificationData:
    """A folder with one sub-folder per class: evaluate on `val_root`, or on a stratified held-out `val_fraction`."""
    common = dict(type="LabelledImageFolder")
    if val_root is None:
        train = dict(common, root=root, part="train", val_fraction=val_fraction)
        val = dict(common, root=root, part="val", val_fraction=val_fraction)
    else:
        train, val = dict(common, root=root), dict(common, root=val_root)
    train.update(augment=True, crop_scale=list(crop_scale))
    classes = LabelledImageFolder(root).metainfo["classes"]
    if val_root is not None:
        val_classes = LabelledImageFolder(val_root).metainfo["classes"]
        if val_classes != classes:
            raise ValueError(f"{val_root} has classes {list(val_classes)}, but {root} has {list(classes)}")
    normalization = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])  # ImageNet's, in 0-255
    return ClassificationData(train, val, num_classes=len(classes), normalization=normalization)
