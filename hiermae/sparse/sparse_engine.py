"""The sparse path: every op computes on visible-site rows `(N, C)` only, with per-stride site tables shared by
all layers of a stage (built on the host as a `SitePlan`, or lazily by `SitePyramid`)."""

from collections.abc import Callable

import torch
from torch import nn

from hiermae.sparse import conv as site_conv
from hiermae.sparse.backends import BackendChoice, measured_backend
from hiermae.sparse.depthwise import gather_depthwise
from hiermae.sparse.engine import Engine, FeatureMap, conv_hyperparameters
from hiermae.sparse.masked_dense import pool_stride
from hiermae.sparse.norm import batch_norm_sites, grn_sites, layer_norm_sites
from hiermae.sparse.sites import SitePlan, SitePyramid, Sites


class SparseEngine(Engine):
    """Visible-site computation for one batch's `visible` map (B×h×w, one cell per unit).

    `choose(kind, kernel, per_unit, channels, device)` names the backend of each stride-1 spatial conv
    (`kind` is "conv" or "depthwise"); the default is the measured table in `hiermae.sparse.backends`.
    `plan` (from `build_site_plan`, on `visible`'s device) supplies the units and tables; without it they are
    computed here, which on a GPU waits once for the device (the visible units' count).
    """

    def __init__(
        self,
        visible: torch.Tensor,
        unit: int,
        choose: BackendChoice = measured_backend,
        plan: SitePlan | None = None,
    ) -> None:
        self.visible = visible
        self.sites = SitePyramid(visible, unit, plan)
        self.choose = choose

    def stem(self, images: torch.Tensor, conv: nn.Conv2d) -> FeatureMap:
        kernel, stride, padding = conv_hyperparameters(conv)
        tiles = site_conv.pixel_tiles(images, self.visible, self.sites.units, self.sites.unit, padding)
        out = site_conv.conv_tiles(tiles, conv.weight, conv.bias, stride, conv.groups, self.sites.unit)
        return FeatureMap(out, stride)

    def conv(self, x: FeatureMap, conv: nn.Conv2d) -> FeatureMap:
        kernel, stride, padding = conv_hyperparameters(conv)
        sites = self.sites.at(x.stride)
        if kernel == 1 and stride == 1 and conv.groups == 1:
            return FeatureMap(site_conv.pointwise(x.data, conv.weight, conv.bias), x.stride)
        if stride > 1:
            out = site_conv.tile_conv(x.data, sites, conv.weight, conv.bias, stride, padding, conv.groups)
            return FeatureMap(out, x.stride * stride)
        if kernel % 2 == 0 or padding != kernel // 2:
            raise NotImplementedError(f"stride-1 convs must be odd-sized 'same' convs, got {conv}")
        depthwise = conv.groups == conv.in_channels == conv.out_channels
        if conv.groups != 1 and not depthwise:
            raise NotImplementedError(f"grouped convs other than depthwise are not supported, got {conv}")
        kind = "depthwise" if depthwise else "conv"
        backend = self.choose(kind, kernel, sites.per_unit, conv.in_channels, x.data.device.type)
        return FeatureMap(run_same_conv(backend, x.data, sites, conv, padding), x.stride)

    def linear(self, x: FeatureMap, layer: nn.Linear | nn.Conv2d) -> FeatureMap:
        return FeatureMap(site_conv.pointwise(x.data, layer.weight, layer.bias), x.stride)

    def batch_norm(self, x: FeatureMap, bn: nn.BatchNorm2d) -> FeatureMap:
        return FeatureMap(batch_norm_sites(x.data, bn), x.stride)

    def layer_norm(self, x: FeatureMap, ln: nn.LayerNorm) -> FeatureMap:
        return FeatureMap(layer_norm_sites(x.data, ln), x.stride)

    def grn(self, x: FeatureMap, grn: nn.Module) -> FeatureMap:
        sites = self.sites.at(x.stride)
        return FeatureMap(grn_sites(x.data, sites.batch, sites.batch_size, grn), x.stride)

    def sample_means(self, x: FeatureMap) -> torch.Tensor:
        sites = self.sites.at(x.stride)
        sums = x.data.new_zeros(sites.batch_size, x.data.shape[1]).index_add(0, sites.batch, x.data)  # B C
        counts = self.visible.flatten(1).sum(1, keepdim=True) * sites.per_unit**2  # B 1: visible sites per sample
        return sums / counts.to(sums.dtype)

    def scale_samples(self, x: FeatureMap, factors: torch.Tensor) -> FeatureMap:
        return FeatureMap(x.data * factors[self.sites.at(x.stride).batch], x.stride)

    def max_pool(self, x: FeatureMap, pool: nn.MaxPool2d) -> FeatureMap:
        kernel = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
        padding = pool.padding if isinstance(pool.padding, int) else pool.padding[0]
        if pool.dilation not in (1, (1, 1)) or pool.ceil_mode:
            raise NotImplementedError(f"max-pool with dilation or ceil_mode is not supported, got {pool}")
        stride = pool_stride(pool)
        out = site_conv.tile_max_pool(x.data, self.sites.at(x.stride), kernel, stride, padding)
        return FeatureMap(out, x.stride * stride)

    def act(self, x: FeatureMap, fn: Callable[[torch.Tensor], torch.Tensor]) -> FeatureMap:
        return FeatureMap(fn(x.data), x.stride)

    def scale(self, x: FeatureMap, gamma: torch.Tensor) -> FeatureMap:
        return FeatureMap(x.data * gamma, x.stride)

    def add(self, x: FeatureMap, y: FeatureMap) -> FeatureMap:
        return FeatureMap(x.data + y.data, x.stride)

    def dense(self, x: FeatureMap) -> torch.Tensor:
        return site_conv.scatter_dense(x.data, self.sites.at(x.stride))


def run_same_conv(backend: str, x: torch.Tensor, sites: Sites, conv: nn.Conv2d, padding: int) -> torch.Tensor:
    """A stride-1 'same' conv (regular or depthwise) on site rows with the named backend."""
    if backend == "tile":
        return site_conv.tile_conv(x, sites, conv.weight, conv.bias, 1, padding, conv.groups)
    if backend == "dense":
        return site_conv.dense_conv(x, sites, conv.weight, conv.bias, padding, conv.groups)
    if backend == "gather":
        if conv.groups == 1:
            return site_conv.gather_conv(x, sites, conv.weight, conv.bias)
        return gather_depthwise(x, sites, conv.weight, conv.bias)
    if backend == "spconv" and conv.groups == 1:
        from hiermae.sparse.spconv_conv import spconv_same_conv

        return spconv_same_conv(x, sites, conv.weight, conv.bias)
    raise ValueError(f"unknown backend {backend!r} for {conv}")
