"""hiermae.model.flops: fvcore's count plus handles for SDPA and ops that record their own work (spconv)."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hiermae.backbones.build import build_encoder
from hiermae.model.flops import count_flops
from hiermae.sparse.sites import SitePyramid
from hiermae.sparse.spconv_conv import spconv_same_conv
from hiermae.utils.flop_recorder import record_flops

from equivalence import visible_units


class Attention(nn.Module):
    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(query, key, value)


class SubmConv(nn.Module):
    def __init__(self, sites) -> None:
        super().__init__()
        self.sites = sites
        self.weight = nn.Parameter(torch.randn(12, 8, 3, 3))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return spconv_same_conv(rows, self.sites, self.weight, None)


def test_conv_is_counted_as_multiply_adds():
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    assert count_flops(conv, (torch.randn(2, 8, 10, 10),)) == 2 * 16 * 10 * 10 * 8 * 9


def test_scaled_dot_product_attention_has_a_handle():
    q, k, v = torch.randn(2, 4, 10, 16), torch.randn(2, 4, 7, 16), torch.randn(2, 4, 7, 8)
    assert count_flops(Attention(), (q, k, v)) == 2 * 4 * 10 * 7 * (16 + 8)


def test_spconv_reports_the_pairs_it_computed():
    sites = SitePyramid(visible_units(2, (2, 2), 0.75), 32).at(8)
    pairs = int((sites.neighbours(3) < sites.num).sum())
    assert pairs < sites.num * 9  # unit borders next to masked units have fewer neighbours
    assert count_flops(SubmConv(sites), (torch.randn(sites.num, 8),)) == pairs * 8 * 12


def test_recording_outside_counting_is_ignored():
    record_flops(10**9)
    assert count_flops(nn.Linear(4, 3, bias=False), (torch.randn(5, 4),)) == 5 * 4 * 3


@pytest.mark.parametrize("name", ["resnet18", "convnextv2_atto"])
def test_sparse_encoder_counts_only_visible_work(name):
    """With 25 % visible the count is ~25 % of dense (a little more: some depthwise layers measured faster on the
    dense backend, which does the masked work too and is counted as such)."""
    dense = build_encoder(name, sparse=False, input_size=128).eval()
    sparse = build_encoder(name, sparse=True, input_size=128).eval()
    images = torch.randn(2, 3, 128, 128)
    everything = torch.ones(2, 4, 4, dtype=torch.bool)
    dense_flops = count_flops(dense, (images, everything))
    assert count_flops(sparse, (images, everything)) == pytest.approx(dense_flops, rel=0.02)
    quarter = visible_units(2, (4, 4), 0.75)
    assert count_flops(sparse, (images, quarter)) <= 0.30 * count_flops(dense, (images, quarter))
