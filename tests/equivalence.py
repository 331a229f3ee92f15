"""Compare a sparse encoder with its masked-dense reference on identical weights (forward and backward).

Used by the equivalence tests and handy when adding a family: `compare_encoders(sparse, dense, images, visible)`
returns the worst error of outputs, input gradients, parameter gradients and BatchNorm running statistics, each
relative to the scale of the reference quantity.
"""

import re

import torch
from torch import nn

from hiermae.backbones.build import build_encoder
from hiermae.masking.masks import RandomMask

ZERO_GRADIENT = 1e-6  # relative to the largest parameter gradient: below it a gradient is rounding noise
RESIDUAL_BRANCH_END = re.compile(r"layer\d+\.\d+\.bn[23]\.weight$")  # last BatchNorms of ResNet branches


def randomize_(model: nn.Module, seed: int) -> None:
    """Give every 1-d parameter and norm buffer random values (timm's init hides bugs: zero GRN, 1e-6 layer
    scale, BN at identity, zeroed last BN of ResNet branches), so equivalence tests exercise every term.

    As in trained networks, the last BatchNorm of each ResNet residual branch gets a small gain (~0.25):
    with undamped random branches, train-mode BatchNorm gradients of a deep ResNet are so ill-conditioned that
    float32 itself differs from float64 by ~1e-1, which would hide the comparison we want.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1:  # norm affine, biases, layer scale, GRN
                scale = name.endswith(("weight", "gamma")) and "grn" not in name
                param.copy_(float(scale) + 0.2 * torch.randn(param.shape, generator=generator))
                if RESIDUAL_BRANCH_END.search(name):
                    param.mul_(0.25)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.2 * torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))


def relative_error(value: torch.Tensor, reference: torch.Tensor, floor: float = 1e-12) -> float:
    """max |value - reference| / max(max |reference|, floor)."""
    scale = reference.abs().max().clamp_min(floor)
    return float((value.float() - reference.float()).abs().max() / scale)


def run_with_grads(
    encoder: nn.Module, images: torch.Tensor, visible: torch.Tensor, weights: list[torch.Tensor]
) -> tuple[list[torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
    """Outputs, input gradient and parameter gradients of the loss Σ⟨output_i, weights_i⟩."""
    images = images.clone().requires_grad_(True)
    encoder.zero_grad(set_to_none=True)
    outputs = encoder(images, visible)
    sum((output * weight).sum() for output, weight in zip(outputs, weights)).backward()
    grads = {name: p.grad.clone() for name, p in encoder.named_parameters() if p.grad is not None}
    return [output.detach() for output in outputs], images.grad.clone(), grads


def compare_encoders(
    sparse: nn.Module, dense: nn.Module, images: torch.Tensor, visible: torch.Tensor, seed: int = 0
) -> dict[str, float]:
    """Worst relative errors of sparse vs dense: 'outputs', 'input_grad', 'param_grads', 'buffers'."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        shapes = [output.shape for output in dense(images, visible)]
    dense.load_state_dict(sparse.state_dict())  # undo the running-stat update of the shape probe
    weights = [torch.randn(shape, generator=generator) for shape in shapes]
    out_s, grad_s, params_s = run_with_grads(sparse, images, visible, weights)
    out_d, grad_d, params_d = run_with_grads(dense, images, visible, weights)
    if params_s.keys() != params_d.keys():
        raise AssertionError(f"different parameters got gradients: {sorted(params_s.keys() ^ params_d.keys())}")
    buffers_d = dict(dense.named_buffers())
    # a gradient that is zero up to rounding (a BatchNorm bias followed by another train-mode BatchNorm) is
    # compared on the scale of the largest gradient, not on its own rounding noise
    floor = ZERO_GRADIENT * max(float(grad.abs().max()) for grad in params_d.values())
    return {
        "outputs": max(relative_error(s, d) for s, d in zip(out_s, out_d)),
        "input_grad": relative_error(grad_s, grad_d),
        "param_grads": max(relative_error(params_s[name], params_d[name], floor) for name in params_d),
        "buffers": max(
            (relative_error(b, buffers_d[name]) for name, b in sparse.named_buffers() if b.is_floating_point()),
            default=0.0,
        ),
    }


def paired_encoders(name: str, input_size: int, seed: int = 0, in_chans: int = 3) -> tuple[nn.Module, nn.Module]:
    """(sparse, dense reference) encoders of `name` for `in_chans`-channel images, holding the same randomized
    weights."""
    dense = build_encoder(name, sparse=False, input_size=input_size, in_chans=in_chans)
    randomize_(dense, seed)
    sparse = build_encoder(name, sparse=True, input_size=input_size, in_chans=in_chans)
    sparse.load_state_dict(dense.state_dict())
    return sparse, dense


def visible_units(batch_size: int, grid: tuple[int, int], ratio: float, seed: int = 0) -> torch.Tensor:
    """A random-mask visible map; ratio 0 (not a legal generator ratio) gives the all-visible map."""
    if ratio == 0:
        return torch.ones(batch_size, *grid, dtype=torch.bool)
    return RandomMask(ratio)(batch_size, grid, torch.arange(seed, seed + batch_size))


def masked_pixel_sensitivity(encoder: nn.Module, images: torch.Tensor, visible: torch.Tensor) -> float:
    """Worst relative change of outputs, input gradients and parameter gradients when the pixels inside masked
    units are replaced by noise; 0 for an encoder that ignores masked units, as the sparse semantics require."""
    hidden = ~visible.repeat_interleave(32, 1).repeat_interleave(32, 2)[:, None]
    changed = images + 10 * torch.randn_like(images) * hidden
    results = []
    for pixels in (images, changed):
        pixels = pixels.clone().requires_grad_(True)
        encoder.zero_grad(set_to_none=True)
        outputs = encoder(pixels, visible)
        sum(output.square().sum() for output in outputs).backward()
        results.append([*outputs, pixels.grad, *(p.grad.clone() for p in encoder.parameters() if p.grad is not None)])
    return max(relative_error(a, b) for a, b in zip(*results, strict=True))
