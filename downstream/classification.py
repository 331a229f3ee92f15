"""Classification evaluation of an encoder: kNN, linear probe and fine-tuning, on Fashion-MNIST or a labelled folder.

Frozen features are the global average of the backbone's last stage map (the family's `pooled_features` of a
timm model loaded from an export or a pretraining checkpoint, or randomly initialised). kNN is a plain feature
pass; the linear probe trains, through an mmengine Runner, on features extracted once; fine-tuning trains the whole
network with the protocol of `finetune.py`. In the low-label regime (`labelled=N`) every protocol trains on the
same fixed stratified N training images and is scored on the test split.
"""

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import DATASETS
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hiermae.backbones import encoder_family
from hiermae.downstream.accuracy import predictions
from hiermae.downstream.classification_data import ClassificationData, fashion_mnist_data
from hiermae.downstream.finetune import FineTuneRecipe, finetune
from hiermae.downstream.pretrained import LoadedBackbone, load_backbone

PROTOCOLS = ("knn", "linear", "finetune")


@torch.no_grad()
def extract_features(
    backbone: LoadedBackbone, dataset: Dataset, normalization: dict, batch_size: int = 256, amp: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N×C pooled float32 features, N labels) of a dataset of uint8 images, in eval mode (`amp`: the forward
    passes under bf16 autocast, 2-3× faster on CPUs with bf16 instructions)."""
    model, family = backbone.model.eval(), encoder_family(backbone.name)
    mean = torch.tensor(normalization["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(normalization["std"]).view(1, -1, 1, 1)
    features, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images = (batch["inputs"].float() - mean) / std
        with torch.autocast(images.device.type, torch.bfloat16, enabled=amp):
            features.append(family.pooled_features(model, images).float())
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


class LinearProbe(BaseModel):
    """A linear classifier on frozen features, standardised by a BatchNorm without affine parameters (MAE's probe,
    He et al. 2022, appendix A.3: it normalises the features' scale, which differs between encoders)."""

    def __init__(self, in_features: int, num_classes: int = 10) -> None:
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


class FeatureDataset(Dataset):
    """Precomputed features with their labels, in the dataset item layout of `hiermae.data.datasets`."""

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


def probe(
    loaded: LoadedBackbone,
    data: ClassificationData,
    protocols: tuple[str, ...],
    *,
    work_dir: str | Path,
    linear_epochs: int,
    seed: int,
    amp: bool = False,
) -> dict[str, float]:
    """kNN and / or linear-probe top-1 of frozen features: trained on `data.train` and scored on `data.val`, both
    without augmentation (`amp`: features extracted under bf16 autocast)."""
    train_cfg, test_cfg = data.at(loaded.input_size, augment=False, channels=loaded.in_chans)
    train_set, test_set = DATASETS.build(train_cfg), DATASETS.build(test_cfg)
    normalization = data.normalization_for(loaded.in_chans)
    train_features, train_labels = extract_features(loaded, train_set, normalization, amp=amp)
    test_features, test_labels = extract_features(loaded, test_set, normalization, amp=amp)
    results = {}
    if "knn" in protocols:
        results["knn"] = knn_accuracy(train_features, train_labels, test_features, test_labels)
    if "linear" in protocols:
        results["linear"] = train_and_test(
            LinearProbe(train_features.shape[1], data.num_classes),
            FeatureDataset(train_features, train_labels),
            FeatureDataset(test_features, test_labels),
            work_dir=work_dir, name="linear_probe", epochs=linear_epochs, batch_size=256, lr=1e-2,
            weight_decay=0.0, seed=seed,
        )  # fmt: skip
    return results


def evaluate(
    checkpoint: str | Path | None,
    *,
    backbone: str | None = None,
    input_size: int | None = None,
    protocols: tuple[str, ...] = ("knn", "linear"),
    train_limit: int | None = None,
    test_limit: int | None = None,
    labelled: int | None = None,
    evaluate_on: str = "test",
    work_dir: str | Path = "work_dirs/evaluate",
    linear_epochs: int = 30,
    recipe: FineTuneRecipe | None = None,
    seed: int = 0,
    trust: bool = False,
    in_chans: int | None = None,
) -> dict[str, float]:
    """Top-1 accuracy per protocol (`knn`, `linear`, `finetune`) on Fashion-MNIST of a checkpoint's encoder, or of
    random init of `backbone`.

    Training data: the first `train_limit` training images, or (`labelled=N`) a fixed stratified N of them;
    scored on the first `test_limit` test images, or (`evaluate_on='validation'`) on other training images.
    Fine-tuning follows `recipe` (default `FineTuneRecipe()`), whose `amp` also sets the precision of the probes'
    feature passes; the fine-tuning curve is written to `<work_dir>/finetune/curve.json`. `trust` unpickles the
    checkpoint in full (`--trust-checkpoint`). Images are read with `in_chans` channels (default: the checkpoint's;
    a stem of another count is adapted).
    """
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        raise ValueError(f"unknown protocols {sorted(unknown)}; valid: {', '.join(PROTOCOLS)}")
    recipe = recipe or FineTuneRecipe()
    torch.manual_seed(seed)
    loaded = load_backbone(checkpoint, backbone, input_size, trust=trust, in_chans=in_chans)
    data = fashion_mnist_data(
        recipe.crop_scale, labelled=labelled, evaluate_on=evaluate_on, train_limit=train_limit,
        test_limit=test_limit,
    )  # fmt: skip
    results = {}
    if "knn" in protocols or "linear" in protocols:
        results = probe(
            loaded, data, protocols, work_dir=work_dir, linear_epochs=linear_epochs, seed=seed, amp=recipe.amp
        )
    if "finetune" in protocols:
        result = finetune(
            checkpoint, data, recipe=recipe, backbone=loaded.name, input_size=loaded.input_size,
            work_dir=Path(work_dir) / "finetune", seed=seed, trust=trust, in_chans=loaded.in_chans,
        )  # fmt: skip
        results["finetune"] = result.top1
    return results
