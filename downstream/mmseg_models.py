"""Register hiermae's backbones in mmseg's model registry (`custom_imports` of the segmentation configs)."""

from mmseg.registry import MODELS

from hiermae.downstream.timm_backbone import TimmConvNeXt

MODELS.register_module(module=TimmConvNeXt)
