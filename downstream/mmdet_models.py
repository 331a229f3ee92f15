"""Register hiermae's backbones in mmdet's model registry (`custom_imports` of the detection configs)."""

from hiermae.utils import require_mmdet

require_mmdet()

from mmdet.registry import MODELS  # noqa: E402

from hiermae.downstream.timm_backbone import TimmBackbone  # noqa: E402

MODELS.register_module(module=TimmBackbone)
