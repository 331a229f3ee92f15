"""hiermae: masked image modeling that really skips masked regions in Swin, ConvNeXt, ResNet (and ViT)."""

from hiermae import data, engine  # noqa: F401  (importing the layers registers what configs name by type)
from hiermae.backbones import build_encoder
from hiermae.masking import MaskPyramid
from hiermae.model import MaskedPretrainer, build_pretrainer

__all__ = ["MaskPyramid", "MaskedPretrainer", "build_encoder", "build_pretrainer"]
