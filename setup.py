"""hiermae: masked image modeling that really skips masked regions in Swin, ConvNeXt, ResNet (and ViT)."""

from setuptools import setup

setup(
    name="hiermae",
    version="0.1.0",
    description="Masked image modeling pretraining for hierarchical and convolutional backbones",
    python_requires=">=3.11",
    packages=[
        "hiermae",
        *(f"hiermae.{layer}" for layer in ("utils", "masking", "sparse", "data", "model", "checkpoints", "engine")),
        "hiermae.backbones",
        "hiermae.downstream",
    ],
    package_dir={"hiermae.backbones": "backbones", "hiermae.downstream": "downstream"},
)
