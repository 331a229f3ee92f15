"""Classification evaluation of an encoder on Fashion-MNIST: kNN, linear probe and fine-tuning.

Features are the global average of the backbone's last stage map (`timm.create_model(name, num_classes=0)`
loaded from an export or a pretraining checkpoint, or randomly initialised). kNN is a plain feature pass;
the linear probe (on features extracted once) and fine-tuning (whole network) train through mmengine Runners.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import METRICS
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hiermae.datasets import FashionMNIST
from hiermae.downstream.checkpoints import backbone_family, create_timm_model, read_encoder_weights
from hiermae.downstream.key_report import KeyReport, strict_load
from hiermae.downstream.resize import fit_to_target

PIXEL_MEAN, PIXEL_STD = 72.9, 90.0  # Fashion-MNIST, as in the pretraining configs
NUM_CLASSES = 10
DEFAULT_INPUT_SIZE = 64  # the pretraining configs' Fashion-MNIST size


@dataclass
class LoadedBackbone:
    """A timm model without classifier, what it is, and how its weights were loaded (None: random init)."""

    model: nn.Module
    name: str
    input_size: int
    report: KeyReport | None


def load_backbone(
    checkpoint: str | Path | None, backbone: str | None = None, input_size: int | None = None
) -> LoadedBackbone:
    """timm `backbone` with num_classes=0, strict-loaded from `checkpoint` or randomly initialised.

    The checkpoint may be a pretraining checkpoint or a timm export; it names its backbone and size unless given.
    """
    if checkpoint is None:
        if not backbone:
            raise ValueError("random init needs a backbone name")
        size = input_size or DEFAULT_INPUT_SIZE
        return LoadedBackbone(create_timm_model(backbone, size, num_classes=0), backbone, size, None)
    weights = read_encoder_weights(checkpoint, backbone)
    size = input_size or weights.input_size
    model = create_timm_model(weights.backbone, size, num_classes=0)
    state_dict, _ = fit_to_target(weights.state_dict, model)
    report = strict_load(model, state_dict, f"timm {weights.backbone} at {size} px", (r"^(head|fc)\.",))
    return LoadedBackbone(model, weights.backbone, size, report)


def pooled_features(model: nn.Module, family: str, images: torch.Tensor) -> torch.Tensor:
    """Global average of the last stage (ViT: of the patch tokens) of a timm model of `family`, B×C."""
    features = model.forward_features(images)
    if family == "swin":  # B×H×W×C
        return features.mean(dim=(1, 2))
    if family == "vit":  # B×N×C with prefix tokens first
        return features[:, model.num_prefix_tokens :].mean(dim=1)
    return features.mean(dim=(2, 3))


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images → the float input the pretraining saw."""
    return (images.float() - PIXEL_MEAN) / PIXEL_STD


@torch.no_grad()
def extract_features(
    backbone: LoadedBackbone, dataset: Dataset, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N×C pooled features, N labels) of a dataset, in eval mode."""
    model, family = backbone.model.eval(), backbone_family(backbone.name)
    features, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        features.append(pooled_features(model, family, normalize(batch["inputs"])))
        labels.append(batch["data_samples"]["label"])
    return torch.cat(features), torch.cat(labels)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Top-1 of a cosine-similarity kNN whose k neighbours vote with weight exp(similarity / temperature)."""
    train = F.normalize(train_features, dim=1)
    test = F.normalize(test_features, dim=1)
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    correct = 0
    for start in range(0, len(test), 1024):
        similarity, index = (test[start : start + 1024] @ train.T).topk(min(k, len(train)), dim=1)
        votes = torch.zeros(len(index), classes).scatter_add_(1, train_labels[index], (similarity / temperature).exp())
        correct += int((votes.argmax(1) == test_labels[start : start + 1024]).sum())
    return correct / len(test)


@METRICS.register_module()
class TopOneAccuracy(BaseMetric):
    """Fraction of samples whose predicted class is the label (the model's predict returns pred/label dicts)."""

    default_prefix = ""

    def process(self, data_batch: dict, data_samples: list[dict]) -> None:
        self.results.extend(int(sample["pred"] == sample["label"]) for sample in data_samples)

    def compute_metrics(self, results: list[int]) -> dict[str, float]:
        return {"top1": sum(results) / max(len(results), 1)}


def predictions(logits: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    return [{"pred": int(p), "label": int(y)} for p, y in zip(logits.argmax(1), labels, strict=True)]


class LinearProbe(BaseModel):
    """A linear classifier on frozen features, standardised by a non-affine BatchNorm (as in MAE's probe)."""

    def __init__(self, in_features: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(in_features, affine=False)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, inputs: torch.Tensor, data_samples: dict, mode: str = "tensor"):
        logits = self.fc(self.norm(inputs))
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, data_samples["label"])}
        if mode == "predict":
            return predictions(logits, data_samples["label"])
        return logits


class FineTuneClassifier(BaseModel):
    """The whole timm backbone plus a linear head on its pooled last stage, trained end to end."""

    def __init__(self, backbone: LoadedBackbone, num_classes: int = NUM_CLASSES) -> None:
        super().__init__(data_preprocessor=dict(type="ImgDataPreprocessor", mean=[PIXEL_MEAN] * 3, std=[PIXEL_STD] * 3))
        self.backbone = backbone.model
        # timm initialised the backbone, or it holds loaded weights: mmengine's Runner calls `init_weights()` of
        # every child that has one, and timm's ResNet / ViT / Swin would re-initialise themselves.
        self.backbone.is_init = True
        self.family = backbone_family(backbone.name)
        self.fc = nn.Linear(backbone.model.num_features, num_classes)

    def forward(self, inputs: torch.Tensor, data_samples: dict, mode: str = "tensor"):
        logits = self.fc(pooled_features(self.backbone, self.family, inputs))
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, data_samples["label"])}
        if mode == "predict":
            return predictions(logits, data_samples["label"])
        return logits


class FeatureDataset(Dataset):
    """Precomputed features with their labels, in the dataset item layout of `FashionMNIST`."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"inputs": self.features[index], "data_samples": {"label": self.labels[index]}}


def train_and_test(
    model: BaseModel,
    train_set: Dataset,
    test_set: Dataset,
    *,
    work_dir: str | Path,
    name: str,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int = 0,
) -> float:
    """Train `model` with AdamW + cosine decay through an mmengine Runner, then return test top-1."""
    loader = dict(batch_size=batch_size, num_workers=0, collate_fn=dict(type="default_collate"))
    runner = Runner(
        model=model,
        work_dir=str(work_dir),
        experiment_name=f"{name}_{time.strftime('%Y%m%d_%H%M%S')}_{time.monotonic_ns()}",
        train_dataloader=dict(dataset=train_set, sampler=dict(type="DefaultSampler", shuffle=True), **loader),
        test_dataloader=dict(dataset=test_set, sampler=dict(type="DefaultSampler", shuffle=False), **loader),
        test_evaluator=dict(type="TopOneAccuracy"),
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        test_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=lr, weight_decay=weight_decay)),
        param_scheduler=[dict(type="CosineAnnealingLR", by_epoch=True, T_max=epochs, convert_to_iter_based=True)],
        default_hooks=dict(
            checkpoint=dict(type="CheckpointHook", interval=-1, save_last=False),
            logger=dict(type="LoggerHook", interval=50),
        ),
        randomness=dict(seed=seed),
        default_scope="mmengine",
    )
    runner.train()
    return float(runner.test()["top1"])


def fashion_mnist(split: str, image_size: int, limit: int | None) -> Dataset:
    """Fashion-MNIST at `image_size` (the dataset the lead's pretraining configs use)."""
    return FashionMNIST(split=split, image_size=image_size, limit=limit)


def evaluate(
    checkpoint: str | Path | None,
    *,
    backbone: str | None = None,
    input_size: int | None = None,
    protocols: tuple[str, ...] = ("knn", "linear"),
    train_limit: int | None = None,
    test_limit: int | None = None,
    work_dir: str | Path = "work_dirs/evaluate",
    linear_epochs: int = 30,
    finetune_epochs: int = 2,
    batch_size: int = 128,
    seed: int = 0,
) -> dict[str, float]:
    """Top-1 accuracy per protocol (`knn`, `linear`, `finetune`) of a checkpoint's encoder, or of random init."""
    unknown = set(protocols) - {"knn", "linear", "finetune"}
    if unknown:
        raise ValueError(f"unknown protocols {sorted(unknown)}; valid: knn, linear, finetune")
    torch.manual_seed(seed)
    loaded = load_backbone(checkpoint, backbone, input_size)
    train_set = fashion_mnist("train", loaded.input_size, train_limit)
    test_set = fashion_mnist("test", loaded.input_size, test_limit)
    results = {}
    if "knn" in protocols or "linear" in protocols:
        train_features, train_labels = extract_features(loaded, train_set)
        test_features, test_labels = extract_features(loaded, test_set)
        if "knn" in protocols:
            results["knn"] = knn_accuracy(train_features, train_labels, test_features, test_labels)
        if "linear" in protocols:
            results["linear"] = train_and_test(
                LinearProbe(train_features.shape[1]),
                FeatureDataset(train_features, train_labels),
                FeatureDataset(test_features, test_labels),
                work_dir=work_dir, name="linear_probe", epochs=linear_epochs, batch_size=256, lr=1e-2,
                weight_decay=0.0, seed=seed,
            )  # fmt: skip
    if "finetune" in protocols:
        results["finetune"] = train_and_test(
            FineTuneClassifier(loaded), train_set, test_set, work_dir=work_dir, name="finetune",
            epochs=finetune_epochs, batch_size=batch_size, lr=5e-4, weight_decay=0.05, seed=seed,
        )  # fmt: skip
    return results
