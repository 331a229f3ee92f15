"""A timm model of any supported backbone, strict-loaded from a pretraining checkpoint or a timm export, or
randomly initialised: the starting point of probing and fine-tuning, for images of any channel count (a stem
trained on another count is adapted as timm adapts pretrained weights: `input_channels.py`)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from hiermae.backbones import encoder_family
from hiermae.downstream.checkpoints import read_encoder_weights
from hiermae.downstream.input_channels import adapt_input_channels
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
    in_chans: int = 3


def load_backbone(
    checkpoint: str | Path | None,
    backbone: str | None = None,
    input_size: int | None = None,
    num_classes: int = 0,
    trust: bool = False,
    in_chans: int | None = None,
    **timm_kwargs: Any,
) -> LoadedBackbone:
    """timm `backbone` with `num_classes` outputs (0: pooled features), strict-loaded from `checkpoint` except
    its classifier head, or randomly initialised when `checkpoint` is None.

    The checkpoint may be a pretraining checkpoint or a timm export; it names its backbone and size unless given.
    Size-dependent tables (Swin, ViT) are resized to `input_size`. The model is the family's classifier
    (`classifier_options`, e.g. ViT pooling its patch tokens); `timm_kwargs` (e.g. `drop_path_rate`) go to timm.
    It reads `in_chans` channels (default: the checkpoint's, 3 for random init); a stem trained on another count
    is adapted as timm adapts pretrained weights, and the report says so.
    The file is read as data; `trust` unpickles it in full (`--trust-checkpoint`, for older files of a trusted origin).
    """
    if checkpoint is None:
        if not backbone:
            raise ValueError("random init needs a backbone name")
        size, channels = input_size or DEFAULT_INPUT_SIZE, in_chans or 3
        model = classifier(backbone, size, num_classes, {**timm_kwargs, "in_chans": channels})
        return LoadedBackbone(model, backbone, size, None, channels)
    weights = read_encoder_weights(checkpoint, backbone, trust=trust)
    size, channels = input_size or weights.input_size, in_chans or weights.in_chans
    model = classifier(weights.backbone, size, num_classes, {**timm_kwargs, "in_chans": channels})
    state_dict, _ = fit_to_target(weights.state_dict, model)
    state_dict, adapted = adapt_input_channels(state_dict, weights.backbone, channels)
    head = encoder_family(weights.backbone).head_key_patterns()
    report = strict_load(model, state_dict, f"timm {weights.backbone} at {size} px, in_chans={channels}", head)
    report.adapted = adapted
    return LoadedBackbone(model, weights.backbone, size, report, channels)


def classifier(backbone: str, input_size: int, num_classes: int, timm_kwargs: dict[str, Any]) -> nn.Module:
    """The family's timm classifier of `backbone` (its `classifier_options` under `timm_kwargs`), randomly
    initialised."""
    family = encoder_family(backbone)
    options = {**family.classifier_options, **timm_kwargs, "num_classes": num_classes}
    return family.create_timm_model(backbone, input_size, **options)
