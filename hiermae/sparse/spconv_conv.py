"""The `spconv` backend: a stride-1 'same' conv as spconv's SubMConv2d on the timm weight, with the index
pairs built once per stride and batch and reused by every layer of that kernel size."""

import functools

import torch

from hiermae.sparse.sites import Sites
from hiermae.sparse.spconv_fixes import apply_spconv_fixes, spconv_indices
from hiermae.utils import record_flops


def spconv_same_conv(x: torch.Tensor, sites: Sites, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(N, C_in) rows -> (N, C_out) rows; weight is timm's (C_out, C_in, k, k)."""
    import spconv.pytorch as spconv

    apply_spconv_fixes()
    out_channels, in_channels, kernel = (int(size) for size in weight.shape[:3])  # ints also under jit tracing
    if "spconv" not in sites.cache:
        sites.cache["spconv"] = spconv.SparseConvTensor(
            x, spconv_indices(sites.index), list(sites.shape), sites.batch_size
        )
    tensor = sites.cache["spconv"].replace_feature(x.float().contiguous())
    conv = subm_conv(in_channels, out_channels, kernel)
    with torch.autocast(x.device.type, enabled=False):
        out = conv._conv_forward(conv.training, tensor, weight.float().permute(0, 2, 3, 1).contiguous(), None)
    sites.cache["spconv"] = out  # its indice_dict now holds the pairs of this kernel size for the next layers
    record_flops(int((sites.neighbours(kernel) < sites.num).sum()) * in_channels * out_channels)
    features = out.features.to(x.dtype)
    return features if bias is None else features + bias


@functools.cache
def subm_conv(in_channels: int, out_channels: int, kernel: int) -> torch.nn.Module:
    """A SubMConv2d used only for its forward logic: the weight is passed in, so its own stays unused."""
    import spconv.pytorch as spconv

    return spconv.SubMConv2d(in_channels, out_channels, kernel, bias=False, indice_key=f"subm{kernel}")
