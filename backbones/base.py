"""The contract every encoder adapter keeps: timm weights inside, images + visible map in, stage maps out."""

import re
from abc import ABC, abstractmethod

import torch
from torch import nn

from hiermae.input_checks import check_images, check_visible
from hiermae.masks import check_divisible


class MaskedEncoder(nn.Module, ABC):
    """Run a timm backbone on an image whose masked units are to be ignored.

    Subclasses hold the timm model as `self.model` (so its parameter names are timm's) and set
    `out_channels` / `out_strides` (one entry per returned stage). `sparse=True` computes at visible sites only;
    `sparse=False` is the dense reference with the same modules.
    """

    mask_unit: int = 32
    family: str = ""
    examples: str = ""  # a few supported timm names, for error messages
    name_pattern: str = ""  # regular expression matched against the full timm name

    @classmethod
    def supports(cls, name: str) -> bool:
        """Whether this family adapts the timm model `name`."""
        return re.fullmatch(cls.name_pattern, name) is not None

    def __init__(self, name: str, *, sparse: bool, input_size: int) -> None:
        super().__init__()
        self.name = name
        self.sparse = sparse
        self.input_size = input_size
        self.out_channels: list[int] = []
        self.out_strides: list[int] = []

    @abstractmethod
    def forward(self, images: torch.Tensor, visible: torch.Tensor) -> list[torch.Tensor]:
        """Return one dense map per stage (B×C×H/s×W/s), zero at masked sites; `visible` is B×h×w bool."""

    def timm_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder weights under timm's own names (what `timm.create_model(name)` loads, head excluded)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def check_input(self, images: torch.Tensor, visible: torch.Tensor) -> None:
        """Raise TypeError / ValueError naming the problem, the same in every family: images that are not a
        non-empty float B×3×H×W batch in the weights' dtype, a size not divisible by the mask unit, or a visible
        map that is not bool B×h×w (shapes and dtypes only; `forward` also refuses a sample with no visible unit)."""
        check_images(images, self.weights_dtype())
        check_divisible(images.shape[-2:], self.mask_unit)
        check_visible(visible, images, self.mask_unit)

    def weights_dtype(self) -> torch.dtype:
        """The dtype of the backbone's weights, which its input must have outside autocast."""
        return next(self.model.parameters()).dtype


def zero_masked(features: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Zero a B×C×H×W map wherever the B×H×W visible map is False."""
    return features * visible.unsqueeze(1).to(features.dtype)

