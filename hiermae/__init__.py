"""hiermae: masked image modeling that really skips masked regions in Swin, ConvNeXt, ResNet (and ViT)."""

from hiermae import amp, datasets, decoder, hooks, losses, masks, preprocess, sampling, shards, targets  # noqa: F401
from hiermae.encoders import build_encoder
from hiermae.masks import MaskPyramid
from hiermae.pretrainer import MaskedPretrainer, build_pretrainer

__all__ = ["MaskPyramid", "MaskedPretrainer", "build_encoder", "build_pretrainer"]
