"""Register hiermae's backbones in mmdet's model registry (`custom_imports` of the detection configs)."""

from mmdet.registry import MODELS

from hiermae.downstream.timm_backbone import TimmConvNeXt

MODELS.register_module(module=TimmConvNeXt)
