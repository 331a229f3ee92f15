"""Encoder adapters, one module per backbone family; importing this package registers them all."""

from hiermae.backbones import convnext, efficientnet, resnet, swin, vit  # noqa: F401  (register the families)
from hiermae.backbones.base import Planner
from hiermae.backbones.build import build_encoder, check_backbone_name, encoder_family
from hiermae.backbones.family import TIMM_BACKBONE, MMBackbone

__all__ = ["MMBackbone", "Planner", "TIMM_BACKBONE", "build_encoder", "check_backbone_name", "encoder_family"]
