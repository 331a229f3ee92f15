"""A timm model of any supported backbone, strict-loaded from a pretraining checkpoint or a timm export, or
randomly initialised: the starting point of probing and fine-tuning."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from hiermae.backbones import encoder_family
from hiermae.downstream.checkpoints import read_encoder_weights
from hiermae.downstream.key_report import KeyReport, strict_load
from hiermae.downstream.resize import fit_to_target

DEFAULT_INPUT_SIZE = 64  # the pretraining configs' Fashion-MNIST size


@dataclass
class LoadedBackbone:
    """A timm model, what it is, and how its weights were loaded (None: random init)."""

    model: nn.Module
    name: str
    input_size: int
    report: KeyReport | None


def load_backbone(
    checkpoint: str | Path | None,
    backbone: str | None = None,
    input_size: int | None = None,
    num_classes: int = 0,
    trust: bool = False,
    **timm_kwargs: Any,
) -> LoadedBackbone:
    """timm `backbone` with `num_classes` outputs (0: pooled features), strict-loaded from `checkpoint` except
    its classifier head, or randomly initialised when `checkpoint` is None.

    The checkpoint may be a pretraining checkpoint or a timm export; it names its backbone and size unless given.
    Size-dependent tables (Swin, ViT) are resized to `input_size`. The model is the family's classifier
    (`classifier_options`, e.g. ViT pooling its patch tokens); `timm_kwargs` (e.g. `drop_path_rate`) go to timm.
    The file is read as data; `trust` unpickles it in full (`--trust-checkpoint`, for older files of a trusted origin).
    """
    if checkpoint is None:
        if not backbone:
            raise ValueError("random init needs a backbone name")
        size = input_size or DEFAULT_INPUT_SIZE
        return LoadedBackbone(classifier(backbone, size, num_classes, timm_kwargs), backbone, size, None)
    weights = read_encoder_weights(checkpoint, backbone, trust=trust)
    size = input_size or weights.input_size
    model = classifier(weights.backbone, size, num_classes, timm_kwargs)
    state_dict, _ = fit_to_target(weights.state_dict, model)
    head = encoder_family(weights.backbone).head_key_patterns()
    report = strict_load(model, state_dict, f"timm {weights.backbone} at {size} px", head)
    return LoadedBackbone(model, weights.backbone, size, report)


def classifier(backbone: str, input_size: int, num_classes: int, timm_kwargs: dict[str, Any]) -> nn.Module:
    """The family's timm classifier of `backbone` (its `classifier_options` under `timm_kwargs`), randomly
    initialised."""
    family = encoder_family(backbone)
    options = {**family.classifier_options, **timm_kwargs, "num_classes": num_classes}
    return family.create_timm_model(backbone, input_size, **options)
