"""Encoder adapters, one module per backbone family; importing this package registers them all."""

from hiermae.backbones import convnext, efficientnet, resnet, swin, vit  # noqa: F401
