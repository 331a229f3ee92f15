"""What downstream use needs to know of a backbone family, declared once on its adapter class.

Export, probing, fine-tuning and the detection / segmentation backbones read a family only through these class
attributes and classmethods (reached by `hiermae.backbones.encoder_family(name)`), so adding a family is one module in
`backbones/` and nothing in `downstream/` or `tools/`. `check_descriptor` runs when a family class is defined:
a family that leaves out a field fails at import, with the field's name.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import timm
import torch
from torch import nn


@dataclass(frozen=True)
class MMBackbone:
    """The mmdet / mmseg backbone a family's weights initialise, and what its export file must hold for it.

    `config`: the backbone config (registered type and arguments) with all four stage outputs, `out_indices`
    (0, 1, 2, 3). `derived_keys`: regular expressions of target keys an export does not provide (buffers the target
    computes from its config, new per-output norms). `file_prefix`: the key prefix the target's `init_weights`
    reads. `weights_attribute`: the attribute of the target that holds the weights ("" for the target itself).
    """

    config: dict[str, Any]
    derived_keys: tuple[str, ...] = ()
    file_prefix: str = ""
    weights_attribute: str = ""

    @property
    def type(self) -> str:
        return self.config["type"]

    def holder(self, target: nn.Module) -> nn.Module:
        """The module of a built target whose state dict the export fills."""
        return getattr(target, self.weights_attribute) if self.weights_attribute else target


TIMM_BACKBONE = "TimmBackbone"  # the registered name of `hiermae.downstream.timm_backbone.TimmBackbone`


def timm_features_backbone(name: str) -> MMBackbone:
    """hiermae's generic `TimmBackbone` for timm's `name`: the timm model's stage maps, its weights under timm's
    names (so a timm export loads as is)."""
    return MMBackbone(dict(type=TIMM_BACKBONE, backbone=name, out_indices=(0, 1, 2, 3)), weights_attribute="model")


# The descriptor fields every family must set (the class attributes below without a usable default).
REQUIRED_FIELDS = ("family", "examples", "name_pattern", "head_modules", "finetune_layer_decay", "finetune_base_lr")
# The classmethods every family must define itself (the base versions raise).
REQUIRED_METHODS = ("lr_layer_count", "lr_layer_id")


class FamilyDescriptor:
    """Class-level facts about a timm backbone family; `MaskedEncoder` carries them, each family sets them.

    - `family`, `examples`, `name_pattern`: its short name, a few timm names for error messages, and the regular
      expression its timm names match in full.
    - `head_modules`: attributes of the timm model that form the classifier head. They are not encoder weights: the
      adapter drops them, exports leave them out, and a classifier initialises them afresh.
    - `sized_by_input`: timm builds the model for one image size (Swin windows, ViT positions), passed as `img_size`.
    - `classifier_options`: timm options of the classifier that probing and fine-tuning build on the weights.
    - `finetune_layer_decay`: the layer-wise lr decay rate for fine-tuning pretrained weights (source in the family's
      module); `lr_layer_count` / `lr_layer_id` number its parameters by depth (the helpers at the end of this module).
    - `finetune_base_lr`: the fine-tuning head's lr per 256 images (lr = base × batch / 256), the same for every
      initialisation; chosen on a validation split (docs/results/finetune-diagnosis-cpu.md).
    - `pooled_features`: the global average of the last stage map, for kNN and linear probes.
    - `mm_backbone` / `mm_state_dict`: the mmdet / mmseg backbone and the key map of its export (none by default).
    """

    family: str = ""
    examples: str = ""
    name_pattern: str = ""
    head_modules: tuple[str, ...] = ()
    sized_by_input: bool = False
    classifier_options: Mapping[str, Any] = MappingProxyType({})
    finetune_layer_decay: float = 0.0
    finetune_base_lr: float = 0.0

    @classmethod
    def supports(cls, name: str) -> bool:
        """Whether this family adapts the timm model `name`."""
        return re.fullmatch(cls.name_pattern, name) is not None

    @classmethod
    def timm_kwargs(cls, input_size: int) -> dict[str, Any]:
        """`timm.create_model` arguments that fit the model to `input_size` px images (none for most CNNs)."""
        return {"img_size": input_size} if cls.sized_by_input else {}

    @classmethod
    def create_timm_model(cls, name: str, input_size: int, **timm_kwargs: Any) -> nn.Module:
        """`timm.create_model(name)` for `input_size` px images, randomly initialised; `timm_kwargs` (e.g.
        `num_classes`, `drop_path_rate`) go to timm."""
        return timm.create_model(name, pretrained=False, **cls.timm_kwargs(input_size), **timm_kwargs)

    @classmethod
    def is_head_key(cls, key: str) -> bool:
        """Whether a timm state-dict key belongs to the classifier head."""
        return key.startswith(tuple(f"{module}." for module in cls.head_modules))

    @classmethod
    def head_key_patterns(cls) -> tuple[str, ...]:
        """Regular expressions of the head's state-dict keys (what a strict load into a classifier may leave out)."""
        return tuple(rf"^{re.escape(module)}\." for module in cls.head_modules)

    @classmethod
    def drop_head(cls, model: nn.Module) -> nn.Module:
        """Replace the head modules of a timm model by identities (its state dict then holds encoder weights only)."""
        for name in cls.head_modules:
            if hasattr(model, name):
                setattr(model, name, nn.Identity())
        return model

    @classmethod
    def pooled_features(cls, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """B×C: the global average of the last stage map of a timm model of this family (NCHW by default)."""
        return model.forward_features(images).mean(dim=(2, 3))

    @classmethod
    def lr_layer_count(cls, model: nn.Module) -> int:
        """N, the number of layers layer-wise lr decay counts between the stem (id 0) and the head (id N + 1)."""
        raise NotImplementedError(f"{cls.__name__} does not number its layers")

    @classmethod
    def lr_layer_id(cls, model: nn.Module, name: str) -> int:
        """The layer id (0..N + 1) of the parameter `name` of a timm model of this family."""
        raise NotImplementedError(f"{cls.__name__} does not number its layers")

    @classmethod
    def mm_backbone(cls, name: str) -> MMBackbone | None:
        """The mmdet / mmseg backbone that the weights of timm's `name` initialise (None: the family has none);
        ValueError for a model of the family that no mmdet / mmseg backbone rebuilds."""
        return None

    @classmethod
    def mm_state_dict(cls, weights: dict[str, torch.Tensor], backbone_cfg: dict) -> dict[str, torch.Tensor]:
        """Encoder weights (timm's names) renamed for the backbone `backbone_cfg` describes (`mm_backbone`'s type);
        timm's names by default."""
        return dict(weights)


def base_method(name: str) -> Any:
    """The function behind `FamilyDescriptor`'s classmethod `name`."""
    return getattr(FamilyDescriptor, name).__func__


def check_descriptor(family: type[FamilyDescriptor]) -> None:
    """Raise TypeError naming every descriptor field a family class leaves unset."""
    unset = [name for name in REQUIRED_FIELDS if not getattr(family, name)]
    unset += [name for name in REQUIRED_METHODS if getattr(family, name).__func__ is base_method(name)]
    if unset:
        raise TypeError(f"backbone family {family.__name__} does not set {', '.join(unset)} (see backbones/family.py)")
    if not 0.0 < family.finetune_layer_decay <= 1.0:
        raise TypeError(f"{family.__name__}.finetune_layer_decay must be in (0, 1], got {family.finetune_layer_decay}")
    if not family.finetune_base_lr > 0.0:
        raise TypeError(f"{family.__name__}.finetune_base_lr must be positive, got {family.finetune_base_lr}")


# Layer ids for layer-wise learning-rate decay, used by the families' `lr_layer_id` classmethods.
# Each family numbers the parameters of its timm model by depth: 0 for the stem or embedding, 1..N through the
# stages or blocks (N = `lr_layer_count`), N + 1 for what follows the last block (final norm, classifier head).
# Fine-tuning scales a parameter's learning rate by rate ** (N + 1 - id), so the head learns at the full rate and
# the stem at the smallest (BEiT, Bao et al. 2022; MAE, He et al. 2022).


def numbered(name: str, prefix: str) -> int | None:
    """The number right after `prefix` in a parameter name (`numbered("layer3.0.conv1.weight", "layer")` is 3),
    or None when the name does not start that way."""
    match = re.match(rf"{re.escape(prefix)}(\d+)\.", name)
    return None if match is None else int(match[1])


def staged_block_id(name: str, stages: str, depths: Sequence[int]) -> int | None:
    """Id of a parameter under `<stages>.<i>.blocks.<j>.`: one more than the blocks before it. Other parameters of
    stage i (its downsampling layer) share the id of the stage's first block. None outside the stages."""
    match = re.match(rf"{re.escape(stages)}\.(\d+)\.(?:blocks\.(\d+)\.)?", name)
    if match is None:
        return None
    stage, block = int(match[1]), int(match[2] or 0)
    return 1 + sum(depths[:stage]) + block


def nested_block_id(name: str, stages: str, depths: Sequence[int]) -> int | None:
    """Id of a parameter of block j of stage i held as nested sequences, `<stages>.<i>.<j>.`: one more than the
    blocks before it. None outside the stages."""
    match = re.match(rf"{re.escape(stages)}\.(\d+)\.(\d+)\.", name)
    if match is None:
        return None
    return 1 + sum(depths[: int(match[1])]) + int(match[2])


def unknown_parameter(family: str, name: str) -> ValueError:
    """The error for a parameter a family's layer numbering does not place."""
    return ValueError(f"{family}: no layer-wise lr decay id for parameter {name!r} (not a timm {family} parameter)")
