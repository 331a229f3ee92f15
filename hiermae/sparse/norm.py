"""Normalisations whose statistics cover visible sites only: on site rows `(N, C)` and on masked dense maps.

The site-row versions are the sparse path; the masked-dense versions are the reference. They are written
independently (torch's BatchNorm on rows vs explicit masked sums) so that the equivalence tests compare two
implementations rather than one with itself.

Synchronised BatchNorm: these functions compute batch statistics themselves, so converting the modules to
`nn.SyncBatchNorm` (mmengine's `sync_bn='torch'`, GPUs) would not sync them by itself. When `bn` is an
`nn.SyncBatchNorm` or an `AllReduceBatchNorm2d` (the CPU stand-in: torch's SyncBatchNorm and DDP refuse CPU
modules) in training and a process group of two or more ranks is initialised, the statistics are summed over the
ranks with autograd-aware all-reduces (`sync_group`, `synced_batch_statistics`); otherwise every path is the
single-process one, unchanged.
"""

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F


def sync_group(bn: nn.Module) -> dist.ProcessGroup | None:
    """The process group whose ranks share `bn`'s batch statistics, or None to keep them per process.

    Set only for an `nn.SyncBatchNorm` in training mode under an initialised process group of two or more ranks.
    """
    synced = isinstance(bn, nn.SyncBatchNorm | AllReduceBatchNorm2d)
    if not (synced and bn.training and dist.is_available() and dist.is_initialized()):
        return None
    group = bn.process_group or dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient: d(sum over ranks)/d(one rank's input) is 1 there."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor, group: dist.ProcessGroup
    ) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, group=ctx.group)
        return total, None


def sum_over_ranks(tensor: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """`tensor` summed over the ranks of `group`, differentiably (torch.distributed.nn's version is deprecated)."""
    return _SumOverRanks.apply(tensor, group)


def synced_moments(
    x: torch.Tensor, group: dist.ProcessGroup, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel mean, biased variance and count over every rank of `group`, for rows `(N, C)` or maps `B×C×…`.

    `weight` (1 at visible positions, 0 elsewhere; broadcast over channels) restricts the statistics. Two passes
    (global mean, then centred squares) keep float32 precision; the all-reduces are autograd-aware so every
    rank's inputs get the gradient of every rank's loss, as torch's SyncBatchNorm does.
    """
    dims = (0, *range(2, x.dim()))
    shape = (-1, *([1] * (x.dim() - 2)))
    weighted = x if weight is None else x * weight
    count = x.new_tensor([x.numel() / x.shape[1]]) if weight is None else weight.sum().reshape(1).to(x.dtype)
    totals = sum_over_ranks(torch.cat([weighted.sum(dims), count]), group=group)
    count = totals[-1].detach()
    mean = totals[:-1] / count
    centred = x - mean.reshape(shape)
    if weight is not None:
        centred = centred * weight
    var = sum_over_ranks(centred.square().sum(dims), group=group) / count
    return mean, var, count


def synced_batch_statistics(
    x: torch.Tensor, group: dist.ProcessGroup, bn: nn.Module, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`synced_moments` for `bn` in training: checks there are enough sites over all ranks, moves `bn`'s running
    averages, and returns the mean and biased variance."""
    mean, var, count = synced_moments(x, group, weight)
    check_enough_sites(int(count), bn)
    update_running_stats(bn, mean, var, float(count))
    return mean, var


def scale_and_shift(bn: nn.Module, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel `scale`, `shift` with BatchNorm's output = x * scale + shift for statistics `mean`, `var`."""
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    return scale, -mean * scale + (bn.bias if bn.bias is not None else 0)


def update_running_stats(bn: nn.Module, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
    """Move `bn`'s running averages towards this batch's mean and unbiased variance, as torch's BatchNorm does."""
    if not (bn.training and bn.track_running_stats):
        return
    factor = momentum_factor(bn)
    with torch.no_grad():
        unbiased = var * count / (count - 1)
        bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), factor)
        bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), factor)


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are summed over `process_group` (None: all ranks) on any device.

    `nn.SyncBatchNorm` does the same on GPUs only. Outside a multi-rank process group it is `nn.BatchNorm2d`.
    """

    def __init__(self, *args, process_group: dist.ProcessGroup | None = None, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = sync_group(self)
        if group is None:
            return super().forward(x)
        mean, var = synced_batch_statistics(x.float() if x.dtype.itemsize < 4 else x, group, self)
        scale, shift = scale_and_shift(self, mean, var)
        return (x * scale[:, None, None] + shift[:, None, None]).to(x.dtype)

    @classmethod
    def convert(cls, module: nn.Module, process_group: dist.ProcessGroup | None = None) -> nn.Module:
        """Replace every `nn.BatchNorm2d` in `module` by this class, sharing its parameters and buffers."""
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, cls):
            converted = cls(
                module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                process_group=process_group,
            )  # fmt: skip
            converted.weight, converted.bias = module.weight, module.bias
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
            converted.train(module.training)
            return converted
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child, process_group))
        return module


def batch_norm_sites(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """BatchNorm over the rows of `(N, C)`: batch statistics and running-stat updates from visible sites only.

    Batch statistics come from two passes, the mean and then the centred squares (in float32 at least): torch's own
    BatchNorm on an (N, C, 1, 1) view takes its channels-last path, whose one-pass statistics were ~14x less precise
    in float32 here, and `torch.var_mean` over dim 0 was 2-5x slower on the CPU than the two passes.
    """
    if not bn.training and bn.running_mean is not None:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    rows = x.float() if x.dtype.itemsize < 4 else x
    group = sync_group(bn)
    if group is None:
        check_enough_sites(x.shape[0], bn)
        mean = rows.mean(0)
        var = (rows - mean).square().mean(0)  # two passes: as precise as var_mean, 2-5x faster on (N, C) rows here
        update_running_stats(bn, mean, var, x.shape[0])
    else:
        mean, var = synced_batch_statistics(rows, group, bn)
    scale, shift = scale_and_shift(bn, mean, var)
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
    group = sync_group(bn)
    if use_batch_stats and group is not None:
        mean, var = synced_batch_statistics(x, group, bn, weight)
    elif use_batch_stats:
        count = weight.sum()
        if x.device.type == "cpu" and not torch.compiler.is_compiling():  # a GPU would wait at every BatchNorm
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
    scale, shift = scale_and_shift(bn, mean, var)
    return (x * scale[:, None, None] + shift[:, None, None]) * weight


def check_enough_sites(count: int, bn: nn.BatchNorm2d) -> None:
    """Training-mode BatchNorm needs two values per channel, as in torch."""
    if bn.training and count < 2:
        raise ValueError(f"BatchNorm in training mode needs more than one visible site per channel, got {count}")
