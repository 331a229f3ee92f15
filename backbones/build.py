"""`build_encoder`: resolve a timm model name to the adapter of its family (the package import registers them)."""

import torch

from hiermae.utils import ENCODERS


def encoder_family(backbone: str) -> type:
    """The adapter class whose family handles `backbone`, or a ValueError listing the supported families."""
    for family in ENCODERS.module_dict.values():
        if family.supports(backbone):
            return family
    families = "; ".join(f"{cls.family}: {cls.examples}" for cls in ENCODERS.module_dict.values())
    raise ValueError(f"unsupported backbone {backbone!r}; supported families: {families}")


def check_backbone_name(backbone: str) -> None:
    """Raise the `build_encoder` error for an unsupported name without building anything."""
    encoder_family(backbone)


def build_encoder(backbone: str, *, sparse: bool = True, input_size: int = 224, in_chans: int = 3) -> torch.nn.Module:
    """Return the encoder adapter for a timm backbone name (`sparse=False` gives the dense reference).

    Args:
        backbone: a timm model name of a supported family (an unknown one is a ValueError listing the families).
        sparse: compute at visible sites only (True), or the masked-dense / mask-token reference (False).
        input_size: the square image size Swin and ViT are built for (their windows and position tables); CNNs
            take any multiple of the 32-px mask unit.
        in_chans: the channels C of the B×C×H×W input (1 grey, 3 RGB, more for multispectral bands); timm builds
            the stem (first conv, patch embedding) for them, every later layer is the same as for RGB.
    """
    return encoder_family(backbone)(backbone, sparse=sparse, input_size=input_size, in_chans=in_chans)
