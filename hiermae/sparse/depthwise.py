"""Depthwise convolution on site rows from the neighbour table (spconv has no grouped convs).

This is the `gather` backend for depthwise layers: gather each site's k×k neighbours and take the per-channel
weighted sum. The `tile` and `dense` backends in `hiermae.sparse.conv` take `groups` and serve depthwise too;
`benchmarks/sparse_backends.py` measures all three.
"""

import torch

from hiermae.sparse.sites import Sites


def gather_depthwise(x: torch.Tensor, sites: Sites, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Stride-1 'same' depthwise conv: (N, C) rows, weight (C, 1, k, k)."""
    channels, _, kernel, _ = weight.shape
    padded = torch.cat([x, x.new_zeros(1, channels)])
    neighbours = padded.index_select(0, sites.neighbours(kernel).reshape(-1)).view(sites.num, kernel * kernel, -1)
    out = torch.einsum("nkc,kc->nc", neighbours, weight.reshape(channels, -1).t())
    return out if bias is None else out + bias
