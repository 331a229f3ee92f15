"""Layer by layer: every sparse op and backend against the masked-dense reference, forward and backward."""

import pytest
import torch
from timm.layers import LayerNorm2d
from timm.layers.grn import GlobalResponseNorm
from torch import nn

from hiermae.sparse import FeatureMap, MaskedDenseEngine, SparseEngine
from hiermae.sparse.backends import fixed_backend
from hiermae.sparse.conv import scatter_dense
from hiermae.sparse.sites import SitePyramid

from equivalence import randomize_, relative_error

BATCH, HEIGHT, WIDTH, UNIT = 2, 96, 64, 32
TOLERANCE = 1e-4


def visible_map(ratio: float, seed: int = 0) -> torch.Tensor:
    """A B×3×2 unit map with about `ratio` masked and at least one unit visible per sample."""
    generator = torch.Generator().manual_seed(seed)
    visible = torch.rand(BATCH, HEIGHT // UNIT, WIDTH // UNIT, generator=generator) >= ratio
    visible[:, 0, 0] = True
    return visible


def run_both(op, layer: nn.Module, stride: int, channels: int, visible: torch.Tensor, backend: str = "tile"):
    """Outputs and gradients (input, parameters) of `op(engine, x, layer)` on both engines."""
    generator = torch.Generator().manual_seed(1)
    full = torch.randn(BATCH, channels, HEIGHT // stride, WIDTH // stride, generator=generator)
    results = []
    for engine in (MaskedDenseEngine(visible, UNIT), SparseEngine(visible, UNIT, fixed_backend(backend))):
        sites = SitePyramid(visible, UNIT).at(stride)
        if isinstance(engine, MaskedDenseEngine):  # a masked-dense map is zero at masked sites
            data = full * visible.repeat_interleave(UNIT // stride, 1).repeat_interleave(UNIT // stride, 2)[:, None]
        else:
            data = full.permute(0, 2, 3, 1).reshape(-1, channels)[sites.flat].clone()
        data.requires_grad_(True)
        layer.zero_grad(set_to_none=True)
        out = engine.dense(op(engine, FeatureMap(data, stride), layer))
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
        (out * weight).sum().backward()
        grad = data.grad if isinstance(engine, MaskedDenseEngine) else scatter_dense(data.grad, sites)
        grads = [p.grad.clone() for p in layer.parameters()]
        results.append((out.detach(), grad, grads))
    return results


def assert_equivalent(results, visible: torch.Tensor, stride: int) -> None:
    (out_d, grad_d, params_d), (out_s, grad_s, params_s) = results
    assert out_s.shape == out_d.shape
    assert relative_error(out_s, out_d) <= TOLERANCE
    hidden = ~visible.repeat_interleave(UNIT // stride, 1).repeat_interleave(UNIT // stride, 2)
    reference_grad = grad_d.masked_fill(hidden[:, None], 0)  # masked inputs are zero in the reference
    assert relative_error(grad_s, reference_grad) <= TOLERANCE
    for p_s, p_d in zip(params_s, params_d):
        assert relative_error(p_s, p_d) <= TOLERANCE


def conv_op(engine, x, layer):
    return engine.conv(x, layer)


RATIOS = [0.0, 0.6, 0.9]


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("backend", ["tile", "gather", "dense", "spconv"])
@pytest.mark.parametrize("stride", [4, 32])
def test_same_conv(backend, stride, ratio):
    visible = visible_map(ratio)
    conv = nn.Conv2d(16, 24, 3, padding=1, bias=False)
    assert_equivalent(run_both(conv_op, conv, stride, 16, visible, backend), visible, stride)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("backend", ["tile", "gather", "dense"])
@pytest.mark.parametrize("stride", [4, 16, 32])
def test_depthwise_conv(backend, stride, ratio):
    visible = visible_map(ratio)
    conv = nn.Conv2d(16, 16, 7, padding=3, groups=16)
    assert_equivalent(run_both(conv_op, conv, stride, 16, visible, backend), visible, stride)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize(
    "conv, stride",
    [
        (nn.Conv2d(3, 16, 7, stride=2, padding=3, bias=False), 1),  # ResNet stem
        (nn.Conv2d(3, 16, 4, stride=4), 1),  # ConvNeXt stem
        (nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), 4),  # strided 3x3 in a bottleneck
        (nn.Conv2d(8, 16, 1, stride=2, bias=False), 8),  # ResNet downsample branch
        (nn.Conv2d(8, 16, 2, stride=2), 16),  # ConvNeXt downsample
        (nn.Conv2d(8, 16, 1), 8),  # pointwise
    ],
)
def test_strided_and_pointwise_conv(conv, stride, ratio):
    visible = visible_map(ratio)
    assert_equivalent(run_both(conv_op, conv, stride, conv.in_channels, visible), visible, stride)


@pytest.mark.parametrize("ratio", RATIOS)
def test_max_pool_treats_masked_inputs_as_minus_infinity(ratio):
    visible = visible_map(ratio)
    pool = nn.MaxPool2d(3, 2, 1)
    # Shift inputs negative: a zero-filled max-pool would then differ from the -inf one at unit borders.
    results = run_both(lambda e, x, layer: e.max_pool(FeatureMap(x.data - 5, x.stride), layer), pool, 2, 8, visible)
    assert_equivalent(results, visible, 2)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_uses_visible_statistics(train, ratio):
    visible = visible_map(ratio)
    bn = nn.BatchNorm2d(8)
    randomize_(bn, 3)
    bn.train(train)
    assert_equivalent(run_both(lambda e, x, layer: e.batch_norm(x, layer), bn, 8, 8, visible), visible, 8)


@pytest.mark.parametrize("engine_type", [MaskedDenseEngine, SparseEngine])
def test_batch_norm_running_stats_match_torch_on_visible_sites(engine_type):
    visible = visible_map(0.6)
    bn, reference = nn.BatchNorm2d(8), nn.BatchNorm2d(8)
    x = torch.randn(BATCH, 8, HEIGHT // 8, WIDTH // 8)
    mask = visible.repeat_interleave(4, 1).repeat_interleave(4, 2)
    rows = x.permute(0, 2, 3, 1)[mask]
    engine = engine_type(visible, UNIT)
    if engine_type is SparseEngine:
        order = SitePyramid(visible, UNIT).at(8).flat
        engine.batch_norm(FeatureMap(x.permute(0, 2, 3, 1).reshape(-1, 8)[order], 8), bn)
    else:
        engine.batch_norm(FeatureMap(x, 8), bn)
    reference(rows[:, :, None, None])
    assert torch.allclose(bn.running_mean, reference.running_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, reference.running_var, atol=1e-6)
    assert bn.num_batches_tracked == reference.num_batches_tracked == 1


@pytest.mark.parametrize("ratio", RATIOS)
def test_layer_norm_and_linear(ratio):
    visible = visible_map(ratio)
    norm = LayerNorm2d(8)
    randomize_(norm, 4)
    assert_equivalent(run_both(lambda e, x, layer: e.layer_norm(x, layer), norm, 4, 8, visible), visible, 4)
    linear = nn.Linear(8, 12)
    assert_equivalent(run_both(lambda e, x, layer: e.linear(x, layer), linear, 4, 8, visible), visible, 4)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("channels_last", [True, False])
def test_grn_norms_over_visible_sites(channels_last, ratio):
    visible = visible_map(ratio)
    grn = GlobalResponseNorm(8, channels_last=channels_last)
    randomize_(grn, 5)
    assert_equivalent(run_both(lambda e, x, layer: e.grn(x, layer), grn, 8, 8, visible), visible, 8)


def test_sites_are_unit_major_and_tables_point_at_neighbours():
    visible = visible_map(0.6)
    sites = SitePyramid(visible, UNIT).at(16)
    index = sites.index
    assert sites.num == int(visible.sum()) * 4
    assert torch.equal(index[:4, 1:] % 2, torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]]))
    table = sites.neighbours(3)
    centre = table[:, 4]
    assert torch.equal(centre, torch.arange(sites.num))
    right = table[:, 5]
    has_right = right < sites.num
    assert torch.equal(index[right[has_right], 2], index[has_right, 2] + 1)
