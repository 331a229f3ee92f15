"""Register hiermae's backbones in mmseg's model registry (`custom_imports` of the segmentation configs)."""

from hiermae.utils import require_mmseg

require_mmseg()

from mmseg.registry import MODELS  # noqa: E402

from hiermae.downstream.timm_backbone import TimmBackbone  # noqa: E402

MODELS.register_module(module=TimmBackbone)
