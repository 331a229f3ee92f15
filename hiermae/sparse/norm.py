"""Normalisations whose statistics cover visible sites only: on site rows `(N, C)` and on masked dense maps.

The site-row versions are the sparse path; the masked-dense versions are the reference. They are written
independently (torch's BatchNorm on rows vs explicit masked sums) so that the equivalence tests compare two
implementations rather than one with itself.
"""

import torch
from torch import nn
from torch.nn import functional as F


def batch_norm_sites(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """BatchNorm over the rows of `(N, C)`: batch statistics and running-stat updates from visible sites only.

    Batch statistics come from `torch.var_mean` (in float32 at least): torch's own BatchNorm on an (N, C, 1, 1)
    view takes its channels-last path, whose one-pass statistics were ~14x less precise in float32 here.
    """
    if not bn.training and bn.running_mean is not None:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    check_enough_sites(x.shape[0], bn)
    var, mean = torch.var_mean(x.float() if x.dtype.itemsize < 4 else x, dim=0, correction=0)
    if bn.training and bn.track_running_stats:
        factor = momentum_factor(bn)
        with torch.no_grad():
            unbiased = var * x.shape[0] / (x.shape[0] - 1)
            bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), factor)
            bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), factor)
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -mean * scale + (bn.bias if bn.bias is not None else 0)
    return torch.addcmul(shift, x, scale)


def layer_norm_sites(x: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
    """LayerNorm over the channels of each site row (timm's LayerNorm and LayerNorm2d alike)."""
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def grn_sites(x: torch.Tensor, batch: torch.Tensor, batch_size: int, grn: nn.Module) -> torch.Tensor:
    """ConvNeXt-V2 Global Response Norm with each sample's L2 norm taken over its visible sites."""
    sum_sq = x.new_zeros(batch_size, x.shape[1]).index_add(0, batch, x * x)
    norm = sum_sq.clamp_min(torch.finfo(sum_sq.dtype).tiny).sqrt()
    relative = norm / (norm.mean(dim=1, keepdim=True) + grn.eps)
    return x + torch.addcmul(grn.bias, grn.weight, x * relative[batch])


def momentum_factor(bn: nn.BatchNorm2d) -> float:
    """Advance `num_batches_tracked` and return the running-average factor, as `nn.BatchNorm2d.forward` does."""
    if bn.num_batches_tracked is None:
        return 0.0 if bn.momentum is None else bn.momentum
    bn.num_batches_tracked.add_(1)
    return 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum


def masked_batch_norm(x: torch.Tensor, visible: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """BatchNorm of a B×C×H×W map with statistics over visible positions only; masked outputs are zero."""
    weight = visible[:, None].to(x.dtype)
    use_batch_stats = bn.training or bn.running_mean is None
    if use_batch_stats:
        count = weight.sum()
        check_enough_sites(int(count), bn)
        mean = (x * weight).sum((0, 2, 3)) / count
        var = ((x - mean[:, None, None]) * weight).square().sum((0, 2, 3)) / count
        if bn.training and bn.track_running_stats:
            factor = momentum_factor(bn)
            with torch.no_grad():
                unbiased = var * count / (count - 1)
                bn.running_mean.mul_(1 - factor).add_(factor * mean.to(bn.running_mean.dtype))
                bn.running_var.mul_(1 - factor).add_(factor * unbiased.to(bn.running_var.dtype))
    else:
        mean, var = bn.running_mean, bn.running_var
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -mean * scale + (bn.bias if bn.bias is not None else 0)
    return (x * scale[:, None, None] + shift[:, None, None]) * weight


def check_enough_sites(count: int, bn: nn.BatchNorm2d) -> None:
    """Training-mode BatchNorm needs two values per channel, as in torch."""
    if bn.training and count < 2:
        raise ValueError(f"BatchNorm in training mode needs more than one visible site per channel, got {count}")
