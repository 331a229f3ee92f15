"""`build_encoder`: resolve a timm model name to the adapter of its family."""

import torch

from hiermae.registry import ENCODERS


def build_encoder(backbone: str, *, sparse: bool = True, input_size: int = 224) -> torch.nn.Module:
    """Return the encoder adapter for a timm backbone name (`sparse=False` gives the dense reference)."""
    import hiermae.backbones  # noqa: F401  (registers the families)

    for family in ENCODERS.module_dict.values():
        if family.supports(backbone):
            return family(backbone, sparse=sparse, input_size=input_size)
    families = "; ".join(f"{cls.family}: {cls.examples}" for cls in ENCODERS.module_dict.values())
    raise ValueError(f"unsupported backbone {backbone!r}; supported families: {families}")
