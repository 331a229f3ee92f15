"""The operations a CNN adapter is written against, so one forward serves the sparse path and the dense reference.

An adapter walks timm's modules and calls `engine.conv(x, module)`, `engine.batch_norm(x, module)`, ...; the
engine decides how: `MaskedDenseEngine` (hiermae.sparse.masked_dense) runs the module on the zero-filled grid and
zeroes masked outputs, `SparseEngine` (hiermae.sparse.sparse_engine) computes on visible-site rows only, and
`PlanningEngine` (hiermae.sparse.planning) computes nothing but records which site tables the sparse walk reads.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class FeatureMap:
    """A feature map at `stride` px: B×C×H×W for the dense reference, visible-site rows (N, C) when sparse."""

    data: torch.Tensor
    stride: int


class Engine(ABC):
    """Masked-image semantics for the ops of a CNN: outputs exist at visible sites only."""

    @abstractmethod
    def stem(self, images: torch.Tensor, conv: nn.Conv2d) -> FeatureMap:
        """The backbone's first conv, on the B×C×H×W input pixels (masked pixels are never read)."""

    @abstractmethod
    def conv(self, x: FeatureMap, conv: nn.Conv2d) -> FeatureMap:
        """Any Conv2d of the backbone (pointwise, spatial, strided, depthwise)."""

    @abstractmethod
    def linear(self, x: FeatureMap, layer: nn.Linear | nn.Conv2d) -> FeatureMap:
        """A per-site linear map: nn.Linear on channels or a 1×1 stride-1 Conv2d."""

    @abstractmethod
    def batch_norm(self, x: FeatureMap, bn: nn.BatchNorm2d) -> FeatureMap:
        """BatchNorm with statistics over visible sites."""

    @abstractmethod
    def layer_norm(self, x: FeatureMap, ln: nn.LayerNorm) -> FeatureMap:
        """LayerNorm over the channels of each site."""

    @abstractmethod
    def grn(self, x: FeatureMap, grn: nn.Module) -> FeatureMap:
        """Global Response Norm with per-sample norms over visible sites."""

    @abstractmethod
    def sample_means(self, x: FeatureMap) -> torch.Tensor:
        """(B, C): each sample's mean over its visible sites (the squeeze of squeeze-excite, as GRN's norms)."""

    @abstractmethod
    def scale_samples(self, x: FeatureMap, factors: torch.Tensor) -> FeatureMap:
        """Multiply every site of sample b by `factors[b]` ((B, C): the excite of squeeze-excite)."""

    @abstractmethod
    def max_pool(self, x: FeatureMap, pool: nn.MaxPool2d) -> FeatureMap:
        """Max-pooling where masked inputs count as -inf."""

    @abstractmethod
    def act(self, x: FeatureMap, fn: Callable[[torch.Tensor], torch.Tensor]) -> FeatureMap:
        """An elementwise activation."""

    @abstractmethod
    def scale(self, x: FeatureMap, gamma: torch.Tensor) -> FeatureMap:
        """Multiply each channel by `gamma` (layer scale)."""

    @abstractmethod
    def add(self, x: FeatureMap, y: FeatureMap) -> FeatureMap:
        """Residual sum of two maps at the same stride."""

    @abstractmethod
    def dense(self, x: FeatureMap) -> torch.Tensor:
        """The B×C×H×W map, zero at masked sites."""


def conv_hyperparameters(conv: nn.Conv2d) -> tuple[int, int, int]:
    """(kernel, stride, padding) of a square, undilated, zero-padded Conv2d; raise for anything else."""
    kernel, stride, padding = conv.kernel_size, conv.stride, conv.padding
    if (len(set(kernel)) != 1 or len(set(stride)) != 1 or isinstance(padding, str) or len(set(padding)) != 1
            or conv.dilation != (1, 1) or conv.padding_mode != "zeros"):
        raise NotImplementedError(f"masked engines support square, undilated, zero-padded convs, got {conv}")
    return kernel[0], stride[0], padding[0]
