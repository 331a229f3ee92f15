"""A timm model of any supported backbone, strict-loaded from a pretraining checkpoint or a timm export, or
randomly initialised: the starting point of probing and fine-tuning."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from hiermae.downstream.checkpoints import backbone_family, create_timm_model, read_encoder_weights
from hiermae.downstream.key_report import KeyReport, strict_load
from hiermae.downstream.resize import fit_to_target

DEFAULT_INPUT_SIZE = 64  # the pretraining configs' Fashion-MNIST size
HEAD_KEYS = (r"^(head|fc)\.",)  # the classifier (ConvNeXt's pre-logits norm included) is never exported


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
    family_options: dict[str, dict[str, Any]] | None = None,
    **timm_kwargs: Any,
) -> LoadedBackbone:
    """timm `backbone` with `num_classes` outputs (0: pooled features), strict-loaded from `checkpoint` except
    its classifier, or randomly initialised when `checkpoint` is None.

    The checkpoint may be a pretraining checkpoint or a timm export; it names its backbone and size unless given.
    Size-dependent tables (Swin, ViT) are resized to `input_size`. `timm_kwargs` (e.g. `drop_path_rate`) go to timm,
    with `family_options[family]` added for the backbone's family.
    """
    if checkpoint is None:
        if not backbone:
            raise ValueError("random init needs a backbone name")
        size = input_size or DEFAULT_INPUT_SIZE
        model = create_timm_model(backbone, size, num_classes, **timm_options(backbone, family_options, timm_kwargs))
        return LoadedBackbone(model, backbone, size, None)
    weights = read_encoder_weights(checkpoint, backbone)
    size = input_size or weights.input_size
    options = timm_options(weights.backbone, family_options, timm_kwargs)
    model = create_timm_model(weights.backbone, size, num_classes, **options)
    state_dict, _ = fit_to_target(weights.state_dict, model)
    report = strict_load(model, state_dict, f"timm {weights.backbone} at {size} px", HEAD_KEYS)
    return LoadedBackbone(model, weights.backbone, size, report)


def timm_options(
    backbone: str, family_options: dict[str, dict[str, Any]] | None, timm_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """`timm_kwargs` plus the options `family_options` gives the family of `backbone`."""
    return {**timm_kwargs, **(family_options or {}).get(backbone_family(backbone), {})}
