"""Reconstruction losses computed on masked units only."""

import torch
import torch.nn.functional as F

from hiermae.utils import LOSSES


class MaskedUnitLoss(torch.nn.Module):
    """Mean over masked units of each unit's mean element-wise error; visible units contribute nothing."""

    def element_error(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """`prediction`, `target`: B×C×H'×W' maps; `visible`: B×h×w bool with H' a multiple of h."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
        cell = target.shape[-1] // visible.shape[-1]
        error = self.element_error(prediction.float(), target.float()).mean(1, keepdim=True)
        per_unit = F.avg_pool2d(error, cell).squeeze(1)
        masked = (~visible).to(per_unit.dtype)
        return (per_unit * masked).sum() / masked.sum().clamp(min=1.0)


@LOSSES.register_module(name="mse")
class MaskedMSELoss(MaskedUnitLoss):
    """Squared error."""

    def element_error(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (prediction - target) ** 2


@LOSSES.register_module(name="l1")
class MaskedL1Loss(MaskedUnitLoss):
    """Absolute error."""

    def element_error(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (prediction - target).abs()
