"""The dense reference (SparK-style masked-dense): every op runs on the whole zero-filled grid, then masked
outputs are zeroed. Its cost is the dense cost; it is the baseline every sparse speed-up is measured against."""

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from hiermae.masking import MaskPyramid
from hiermae.sparse.engine import Engine, FeatureMap, conv_hyperparameters
from hiermae.sparse.norm import masked_batch_norm


class MaskedDenseEngine(Engine):
    """Masked-dense semantics on B×C×H×W maps for one batch's `visible` map (B×h×w, one cell per unit)."""

    def __init__(self, visible: torch.Tensor, unit: int) -> None:
        self.masks = MaskPyramid(visible, unit)

    def _zeroed(self, data: torch.Tensor, stride: int) -> FeatureMap:
        return FeatureMap(data.masked_fill(~self.masks.at(stride)[:, None], 0), stride)

    def stem(self, images: torch.Tensor, conv: nn.Conv2d) -> FeatureMap:
        return self.conv(self._zeroed(images, 1), conv)

    def conv(self, x: FeatureMap, conv: nn.Conv2d) -> FeatureMap:
        _, stride, _ = conv_hyperparameters(conv)
        return self._zeroed(conv(x.data), x.stride * stride)

    def linear(self, x: FeatureMap, layer: nn.Linear | nn.Conv2d) -> FeatureMap:
        if isinstance(layer, nn.Conv2d):
            return self.conv(x, layer)
        return self._zeroed(layer(x.data.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), x.stride)

    def batch_norm(self, x: FeatureMap, bn: nn.BatchNorm2d) -> FeatureMap:
        return FeatureMap(masked_batch_norm(x.data, self.masks.at(x.stride), bn), x.stride)

    def layer_norm(self, x: FeatureMap, ln: nn.LayerNorm) -> FeatureMap:
        out = F.layer_norm(x.data.permute(0, 2, 3, 1), ln.normalized_shape, ln.weight, ln.bias, ln.eps)
        return self._zeroed(out.permute(0, 3, 1, 2), x.stride)

    def grn(self, x: FeatureMap, grn: nn.Module) -> FeatureMap:
        if grn.channel_dim == 1:
            return self._zeroed(grn(x.data), x.stride)
        return self._zeroed(grn(x.data.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), x.stride)

    def sample_means(self, x: FeatureMap) -> torch.Tensor:
        weight = self.masks.at(x.stride)[:, None].to(x.data.dtype)  # B 1 H W
        return (x.data * weight).sum((2, 3)) / weight.sum((2, 3))

    def scale_samples(self, x: FeatureMap, factors: torch.Tensor) -> FeatureMap:
        return self._zeroed(x.data * factors[:, :, None, None], x.stride)

    def max_pool(self, x: FeatureMap, pool: nn.MaxPool2d) -> FeatureMap:
        hidden = ~self.masks.at(x.stride)[:, None]
        # the lowest finite value rather than -inf: a window of masked sites only (its output is zeroed) would give
        # torch.compile's max-pool backward an out-of-range index; a visible output's window holds a visible site
        out = pool(x.data.masked_fill(hidden, torch.finfo(x.data.dtype).min))
        return self._zeroed(out, x.stride * pool_stride(pool))

    def act(self, x: FeatureMap, fn: Callable[[torch.Tensor], torch.Tensor]) -> FeatureMap:
        return self._zeroed(fn(x.data), x.stride)

    def scale(self, x: FeatureMap, gamma: torch.Tensor) -> FeatureMap:
        return self._zeroed(x.data * gamma[:, None, None], x.stride)

    def add(self, x: FeatureMap, y: FeatureMap) -> FeatureMap:
        return self._zeroed(x.data + y.data, x.stride)

    def dense(self, x: FeatureMap) -> torch.Tensor:
        return x.data


def pool_stride(pool: nn.MaxPool2d) -> int:
    """The (square) stride of a pooling layer."""
    stride = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
    return int(stride)
