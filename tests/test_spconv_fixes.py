"""Each spconv CPU workaround (hiermae.sparse.spconv_fixes) with a test that fails without it."""

import torch
from torch.nn import functional as F

from hiermae.sparse.conv import dense_conv
from hiermae.sparse.sites import SitePyramid
from hiermae.sparse.spconv_conv import spconv_same_conv, subm_conv
from hiermae.sparse.spconv_fixes import apply_spconv_fixes, spconv_indices

from equivalence import relative_error, visible_units


def layer_inputs(channels: int, stride: int = 4, seed: int = 0):
    visible = visible_units(2, (3, 3), 0.6, seed)
    sites = SitePyramid(visible, 32).at(stride)
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(sites.num, channels, generator=generator)
    weight = torch.randn(channels, channels, 3, 3, generator=generator) / (3 * channels**0.5)
    return sites, rows, weight


def test_backward_runs_on_cpu_only_torch():
    """Fix 1: without it spconv's backward asks for a CUDA stream and raises on CPU-only torch."""
    sites, rows, weight = layer_inputs(16)
    rows.requires_grad_(True)
    weight.requires_grad_(True)
    spconv_same_conv(rows, sites, weight, None).square().sum().backward()
    reference_rows = rows.detach().clone().requires_grad_(True)
    reference_weight = weight.detach().clone().requires_grad_(True)
    dense_conv(reference_rows, sites, reference_weight, None, 1).square().sum().backward()
    assert relative_error(rows.grad, reference_rows.grad) <= 1e-5
    assert relative_error(weight.grad, reference_weight.grad) <= 1e-5


def test_forward_is_right_with_two_threads():
    """Fix 2: spconv's CPU scatter-add races with 2+ OpenMP threads (wrong in 2-13 of 20 runs without it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sites, rows, weight = layer_inputs(64, stride=2)
        expected = dense_conv(rows, sites, weight, None, 1)
        wrong = sum(relative_error(spconv_same_conv(rows, sites, weight, None), expected) > 1e-5 for _ in range(20))
    finally:
        torch.set_num_threads(threads)
    assert wrong == 0


def test_indices_are_made_contiguous():
    """Fix 3: spconv silently misreads non-contiguous indices; `spconv_indices` is how we build them."""
    import spconv.pytorch as spconv

    apply_spconv_fixes()
    sites, rows, weight = layer_inputs(8)
    column_major = sites.index.t().contiguous().t()
    assert not column_major.is_contiguous()
    tensor = spconv.SparseConvTensor(rows, spconv_indices(column_major), list(sites.shape), sites.batch_size)
    out = subm_conv(8, 8, 3)._conv_forward(False, tensor, weight.permute(0, 2, 3, 1).contiguous(), None)
    assert relative_error(out.features, dense_conv(rows, sites, weight, None, 1)) <= 1e-5


def test_dense_conv_reference_is_plain_conv():
    """The reference used above: the zero-filled dense conv, read back at the visible sites."""
    sites, rows, weight = layer_inputs(8)
    from hiermae.sparse.conv import scatter_dense

    dense = F.conv2d(scatter_dense(rows, sites), weight, padding=1)
    expected = dense.permute(0, 2, 3, 1).reshape(-1, 8)[sites.flat]
    assert torch.allclose(dense_conv(rows, sites, weight, None, 1), expected)
