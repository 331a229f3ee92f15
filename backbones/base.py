"""The contract every encoder adapter keeps: timm weights inside, images + visible map in, stage maps out."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from hiermae.backbones.family import FamilyDescriptor, check_descriptor
from hiermae.masking import (
    check_divisible,
    check_every_sample_sees,
    check_images,
    check_in_chans,
    check_visible,
    to_device,
)


class Planner(Protocol):
    """Builds a sparse encoder's plan (CPU tensors) from a B×h×w visible map on the CPU."""

    def __call__(self, visible: torch.Tensor) -> Any: ...

    def calibrated(self, examples: list[torch.Tensor]) -> "Planner":
        """The planner with any static budgets measured on example visible maps of the training masks."""


@dataclass(frozen=True)
class CheckedMask:
    """The dense reference's planner: an empty plan, built once the host has checked the mask."""

    def __call__(self, visible: torch.Tensor) -> tuple:
        return ()

    def calibrated(self, examples: list[torch.Tensor]) -> "CheckedMask":
        return self


class MaskedEncoder(FamilyDescriptor, nn.Module, ABC):
    """Run a timm backbone on an image whose masked units are to be ignored.

    Subclasses hold the timm model as `self.model` (so its parameter names are timm's) and set
    `out_channels` / `out_strides` (one entry per returned stage). `sparse=True` computes at visible sites only;
    `sparse=False` is the dense reference with the same modules.

    The sparse path reads a *plan*: index tensors saying where to compute for this batch's mask, built on the
    host by `planner(device_type)` from a CPU copy of the mask. Every tensor in a plan has a shape fixed by
    (batch, input size, number of visible units), so with the exact-count mask generators the sparse step has
    static shapes and never waits for the host. Pass `plan=` (built ahead, e.g. in a data-loader worker) to skip
    planning in the step; without it the plan is built here from `visible` (a CPU `visible` costs no device wait).

    A family's class also sets the descriptor fields of `FamilyDescriptor` (`backbones/family.py`): what export,
    probing, fine-tuning and detection need to know of it. They are checked when the class is defined.
    """

    mask_unit: int = 32

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name_pattern:  # a family (intermediate bases such as SiteEncoder name no models)
            check_descriptor(cls)

    def __init__(self, name: str, *, sparse: bool, input_size: int, in_chans: int = 3) -> None:
        super().__init__()
        check_in_chans(in_chans)
        self.name = name
        self.sparse = sparse
        self.input_size = input_size
        self.in_chans = in_chans
        self.out_channels: list[int] = []
        self.out_strides: list[int] = []

    def forward(self, images: torch.Tensor, visible: torch.Tensor, plan: Any = None) -> list[torch.Tensor]:
        """Return one dense map per stage (B×C×H/s×W/s), zero at masked sites; `visible` is B×h×w bool.

        `plan`: from `self.plan_for(visible, images.device)` (or a planner), on the images' device; built here when
        not given (the mask's values are then checked here, which on a GPU waits once for the device).
        """
        self.check_input(images, visible)
        if plan is None:  # with a plan, the host that built it checked the mask's values
            plan = self.plan_for(visible, images.device)
        if visible.device != images.device:
            visible = visible.to(images.device, non_blocking=True)
        return self.encode(images, visible, plan)

    @abstractmethod
    def encode(self, images: torch.Tensor, visible: torch.Tensor, plan: Any) -> list[torch.Tensor]:
        """The stage maps for checked inputs; `plan` is None for the dense reference."""

    def planner(self, device_type: str) -> Planner:
        """A small picklable callable that builds this encoder's plan from a B×h×w visible map on the CPU, for a
        step on `device_type` ("cpu", "cuda"); data-loader workers hold it to plan batches ahead of the step.

        The dense reference needs no indices: its plan is empty, and only says that the host has checked the mask.
        """
        return self.sparse_planner(device_type) if self.sparse else CheckedMask()

    @abstractmethod
    def sparse_planner(self, device_type: str) -> Planner:
        """The sparse path's planner (see `planner`)."""

    def plan_for(self, visible: torch.Tensor, device: torch.device | str) -> Any:
        """The plan for `visible`, built on the host and sent to `device` in one non-blocking copy.

        A `visible` on a GPU is first copied to the host, which waits for the device once; draw masks on the CPU
        (as `MaskedPretrainer` does) to avoid that.
        """
        device = torch.device(device)
        planners = self.__dict__.setdefault("_planners", {})  # built once per device type, outside any step
        if device.type not in planners:
            planners[device.type] = self.planner(device.type)
        host_visible = visible.cpu()
        check_every_sample_sees(host_visible)
        return to_device(planners[device.type](host_visible), device)

    def timm_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder weights under timm's own names (what `timm.create_model(name)` loads, head excluded)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def check_input(self, images: torch.Tensor, visible: torch.Tensor) -> None:
        """Raise TypeError / ValueError naming the problem, the same in every family: images that are not a
        non-empty float B×C×H×W batch (C = `in_chans`) in the weights' dtype, a size not divisible by the mask
        unit, or a visible map that is not bool B×h×w (shapes and dtypes only; `forward` also refuses a sample with
        no visible unit)."""
        check_images(images, self.weights_dtype(), self.in_chans)
        check_divisible(images.shape[-2:], self.mask_unit)
        check_visible(visible, images, self.mask_unit)

    def weights_dtype(self) -> torch.dtype:
        """The dtype of the backbone's weights, which its input must have outside autocast."""
        return next(self.model.parameters()).dtype


def zero_masked(features: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Zero a B×C×H×W map wherever the B×H×W visible map is False."""
    return features * visible.unsqueeze(1).to(features.dtype)
