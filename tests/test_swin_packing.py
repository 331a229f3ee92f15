"""Swin's packed attention step: gathers whose backward is a gather, the bin attention against torch's, and a step
with no scatter-add of moved tokens and no device-side mask checks."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from hiermae.backbones.swin import SwinEncoder
from hiermae.backbones.swin_sparse import (
    BinAttention,
    PackedQKV,
    gather_rows,
    packed_masks,
    packed_rows,
    sparse_block,
)
from hiermae.utils.registry import MASK_GENERATORS

TINY = "swin_tiny_patch4_window7_224"
SMALL = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=7)  # 64 px: timm pads 16 -> 21


def small_encoder() -> SwinEncoder:
    """A small Swin at 64 px, where timm pads the 16×16 and 8×8 grids to whole 7×7 windows; weights perturbed."""
    torch.manual_seed(0)
    encoder = SwinEncoder(TINY, input_size=64, **SMALL)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return encoder


def random_visible(batch: int, grid: int, seed: int = 0) -> torch.Tensor:
    generator = MASK_GENERATORS.build({"type": "random", "mask_ratio": 0.75})
    return generator(batch, (grid, grid), torch.arange(batch) + seed)


@pytest.mark.parametrize("unread", [0, 5])
def test_gather_rows_backward_equals_the_scatter_add_of_indexing(unread: int) -> None:
    """A permutation, or rows that are never read (their gradient is zero, whatever their `inverse` entry):
    forward and backward are exact."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(2, 40, 3, generator=generator, requires_grad=True)
    order = torch.randperm(40, generator=generator)
    index, never_read = order[: 40 - unread], order[40 - unread :]
    inverse = torch.randint(len(index), (40,), generator=generator)  # unread rows: any output row
    inverse[index] = torch.arange(len(index))
    weights = torch.randn(2, len(index), 3, generator=generator)
    out = gather_rows(rows, index, inverse, never_read if unread else None)
    (grad,) = torch.autograd.grad((out * weights).sum(), rows)
    expected = rows[:, index]  # advanced indexing: its backward scatters with accumulation
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), rows)
    assert torch.equal(out, expected) and torch.equal(grad, expected_grad)
    assert int((grad.abs().sum((0, 2)) == 0).sum()) == unread


@pytest.mark.parametrize("shared", [False, True])
def test_packed_qkv_equals_indexing_token_and_bias_rows_with_gradients(shared: bool) -> None:
    """Tokens move to their slots; padding sites and empty slots read qkv's bias, whose gradient sums the padding
    slots' (here a grid timm pads to whole windows)."""
    encoder = small_encoder()
    visible = random_visible(3, 2)
    if shared:
        visible = visible[:1].repeat(3, 1, 1)
    planner = encoder.planner("cpu")
    if shared:
        planner = planner.calibrated([visible])
    packing = planner(visible)[0].packings[1]  # stage 0, shifted windows
    assert packing.has_padding and packing.samples == (3 if shared else 1)
    heads, dim = 2, 4
    rows_of = packed_rows(packing, heads)
    generator = torch.Generator().manual_seed(1)
    tokens = len(packing.token_slot)
    rows = torch.randn(packing.samples, tokens * 3 * heads, dim, generator=generator, requires_grad=True)
    bias = torch.randn(3 * heads, dim, generator=generator, requires_grad=True)
    weights = torch.randn(packing.samples, 3 * heads * len(packing.source), dim, generator=generator)
    # empty slots get no gradient in attention; weight them 0 as attention does
    weights.view(packing.samples, 3 * heads, -1, dim)[:, :, packing.slot_group.view(-1) < 0] = 0
    out = PackedQKV.apply(rows, bias, rows_of.qkv_index, rows_of.qkv_inverse, rows_of.padding)
    grads = torch.autograd.grad((out * weights).sum(), (rows, bias))
    expected = torch.cat([rows, bias.expand(packing.samples, -1, -1)], 1)[:, rows_of.qkv_index]
    expected_grads = torch.autograd.grad((expected * weights).sum(), (rows, bias))
    assert torch.equal(out, expected) and torch.equal(grads[0], expected_grads[0])
    assert torch.allclose(grads[1], expected_grads[1], atol=1e-5) and float(grads[1].abs().sum()) > 0


def test_packed_qkv_without_padding_moves_token_rows_only() -> None:
    """Where timm does not pad (Swin-T at 224 px), empty slots read some token's rows instead of a copied bias
    row; token slots hold their tokens' rows, and with the empty slots' gradient zero, as attention gives them,
    every token row gets exactly its own slot's gradient."""
    encoder = SwinEncoder(TINY, input_size=224)
    visible = random_visible(2, 7)
    packing = encoder.planner("cpu")(visible)[1].packings[1]  # stage 1, shifted windows
    assert not packing.has_padding and len(packing.tokenless_slots) > 0
    heads, dim = 2, 4
    rows_of = packed_rows(packing, heads)
    assert rows_of.padding is None
    generator = torch.Generator().manual_seed(1)
    tokens, slots = len(packing.token_slot), len(packing.source)
    rows = torch.randn(1, tokens * 3 * heads, dim, generator=generator, requires_grad=True)
    bias = torch.randn(3 * heads, dim, generator=generator, requires_grad=True)
    weights = torch.randn(1, 3 * heads * slots, dim, generator=generator)
    weights.view(1, 3 * heads, slots, dim)[:, :, packing.tokenless_slots] = 0
    out = PackedQKV.apply(rows, bias, rows_of.qkv_index, rows_of.qkv_inverse, rows_of.padding)
    (grad,) = torch.autograd.grad((out * weights).sum(), rows)
    has_token = torch.ones(slots, dtype=torch.bool)
    has_token[packing.tokenless_slots] = False
    token_rows = out.view(1, 3 * heads, slots, dim)[:, :, has_token]  # 1, 3·heads, T, d in slot order
    expected = rows.view(1, tokens, 3 * heads, dim).transpose(1, 2)[:, :, packing.source[has_token]]
    assert torch.equal(token_rows, expected)
    (expected_grad,) = torch.autograd.grad((rows[:, rows_of.qkv_index] * weights).sum(), rows)
    assert torch.equal(grad, expected_grad)


def test_attention_derived_on_the_host_gives_the_step_derived_on_the_device() -> None:
    """A CPU plan carries each packing's masks and gather rows; without them the step derives the same."""
    encoder = small_encoder().train()
    visible = random_visible(2, 2)
    planner = encoder.planner("cpu")
    assert planner.derive_on_host
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    results = []
    for plan in (planner(visible), replace(planner, derive_on_host=False)(visible)):
        encoder.zero_grad(set_to_none=True)
        torch.manual_seed(5)  # the same stochastic-depth draws
        outputs = encoder(images, visible, plan)
        sum(output.square().mean() for output in outputs).backward()
        grads = [parameter.grad.clone() for parameter in encoder.parameters() if parameter.grad is not None]
        results.append(([output.detach() for output in outputs], grads))
    (outs_host, grads_host), (outs_device, grads_device) = results
    assert all(torch.equal(a, b) for a, b in zip(outs_host, outs_device, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(grads_host, grads_device, strict=True))


@pytest.mark.parametrize("samples", [1, 2])
def test_bin_attention_equals_torch_attention_with_bias_gradients(samples: int) -> None:
    """One or two samples sharing one bias with blocked (-inf) pairs: output and the packed q, k, v gradient and
    the bias gradient."""
    generator = torch.Generator().manual_seed(0)
    packed = torch.randn(samples, 3, 6, 5, 4, generator=generator, requires_grad=True)  # S, q/k/v, bins, cap, d
    bias = torch.randn(6, 5, 5, generator=generator)
    bias[:, :2, 3:] = bias[:, 3:, :2] = float("-inf")  # two groups per bin
    bias.requires_grad_(True)
    weights = torch.randn(samples, 6, 5, 4, generator=generator)
    out = BinAttention.apply(packed, bias, 0.3)
    grads = torch.autograd.grad((out * weights).sum(), (packed, bias))
    expected = F.scaled_dot_product_attention(*packed.unbind(1), attn_mask=bias, scale=0.3)
    expected_grads = torch.autograd.grad((expected * weights).sum(), (packed, bias))
    assert torch.allclose(out, expected, atol=1e-6)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert torch.allclose(grad, expected_grad, atol=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_bin_attention_and_torch_attention_routes_give_the_same_block(shared: bool) -> None:
    """The CPU route (bias gathered, `BinAttention`) and torch's attention with the one-hot matmul bias (the GPU
    route): one shifted block in training mode, output and every parameter gradient; per-sample packing, or one
    packing serving both samples of a shared mask."""
    encoder = small_encoder().train()
    visible = random_visible(2, 2)
    if shared:
        visible = visible[:1].repeat(2, 1, 1)
    planner = encoder.planner("cpu")
    plan = (planner.calibrated([visible]) if shared else planner)(visible)[0]
    assert plan.packings[0].samples == (2 if shared else 1)
    block, packing = encoder.model.layers[0].blocks[1], plan.packings[plan.block_packing[1]]
    tokens = torch.randn(len(plan.sites.batch), 16, generator=torch.Generator().manual_seed(2))
    results = []
    for by_matmul in (False, True):
        block.zero_grad(set_to_none=True)
        rows = packed_rows(packing, block.attn.num_heads)
        torch.manual_seed(3)  # the same stochastic-depth draws
        out = sparse_block(block, tokens, plan.sites, packing, packed_masks(packing, by_matmul), rows)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in block.parameters()]))
    (out_cpu, grads_cpu), (out_torch, grads_torch) = results
    assert torch.allclose(out_cpu, out_torch, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads_cpu, grads_torch, strict=True))


def autograd_nodes(output: torch.Tensor) -> list[str]:
    """Names of every node in the autograd graph behind `output`."""
    names, stack, seen = [], [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def test_a_sparse_step_moves_tokens_by_gathers_and_checks_no_masks_on_the_device() -> None:
    """No advanced-indexing gather (whose backward scatters with accumulation) in the step's graph: tokens move by
    `GatherRows`; the only accumulation is into each block's bias table (`TableRows`). And no `aten::all` (torch's
    softmax over masked rows checks every row on the device)."""
    encoder = small_encoder().train()
    visible = random_visible(2, 2)
    plan = encoder.planner("cpu")(visible)
    images = torch.randn(2, 3, 64, 64)
    with profile() as prof:
        outputs = encoder(images, visible, plan)
        loss = sum(output.mean() for output in outputs)
        loss.backward()
    nodes = autograd_nodes(loss)
    assert "IndexBackward0" not in nodes and "IndexSelectBackward0" not in nodes
    assert nodes.count("TableRowsBackward") == sum(len(stage.blocks) for stage in encoder.model.layers)
    assert "GatherRowsBackward" in nodes and "BinAttentionBackward" in nodes
    assert "aten::all" not in {event.key for event in prof.key_averages()}


@pytest.mark.slow
def test_compiled_sparse_swin_trains_under_bf16_autocast() -> None:
    """`torch.compile` of the sparse Swin step under CPU bf16 autocast (what `--compile --amp` runs): the packed
    attention's custom functions trace with the dtypes autocast gives them, and match the eager step."""
    encoder = small_encoder().train()
    visible = random_visible(2, 2)
    plan = encoder.planner("cpu")(visible)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    results = []
    for run in (encoder, torch.compile(encoder, dynamic=False)):
        encoder.zero_grad(set_to_none=True)
        torch.manual_seed(7)  # the same stochastic-depth draws
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = run(images, visible, plan)
        sum(output.float().square().mean() for output in outputs).backward()
        results.append(([output.detach().float() for output in outputs], encoder.model.patch_embed.proj.weight.grad))
    (eager, eager_grad), (compiled, compiled_grad) = results
    assert all(torch.allclose(a, b, atol=0.05, rtol=0.05) for a, b in zip(eager, compiled, strict=True))
    assert torch.allclose(eager_grad, compiled_grad, atol=0.05 * float(eager_grad.abs().max()))
