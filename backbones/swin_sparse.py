"""timm Swin's modules executed on visible tokens only: patch embedding, packed window attention, patch merging.

Each function takes a timm submodule and runs its own weights on an (N, C) tensor of visible tokens whose sites
are given by `TokenSites`; with every site visible the results equal timm's dense forward.
Every reordering of tokens (into attention bins and back, into patch merges) is a gather whose backward is a
gather too (`GatherRows`, with the inverse index from the host plan): rows that only move are never scattered
with accumulation. Only timm's zero padding sites really merge, into the qkv bias (`PackedQKV`).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models.swin_transformer import PatchMerging, SwinTransformerBlock, WindowAttention
from torch import nn

from hiermae.backbones.swin_windows import WindowPacking

# timm's PatchMerging concatenates the 2×2 children in this (dy, dx) order
MERGE_ORDER = ((0, 0), (1, 0), (0, 1), (1, 1))
# -inf rows appended to the bias table for blocked pairs: spread over several rows, the backward's scatter_add_
# does not chain additions into one row (2.3x faster for a stage-0 packing on the CPU)
BLOCKED_ROWS = 16


@dataclass(frozen=True)
class TokenSites:
    """The visible sites of one stage, one per token, in row-major order of its B×H×W visible map."""

    shape: tuple[int, int, int]  # B, H, W of the stage's grid
    batch: torch.Tensor
    ys: torch.Tensor
    xs: torch.Tensor

    @classmethod
    def of(cls, visible: torch.Tensor) -> "TokenSites":
        batch, ys, xs = visible.nonzero(as_tuple=True)  # each (N,), row-major over B×H×W
        return cls(tuple(visible.shape), batch, ys, xs)

    @property
    def coordinates(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.batch, self.ys, self.xs

    def index_map(self) -> torch.Tensor:
        """B×H×W map from a site to its token index (-1 at masked sites)."""
        index = torch.full(self.shape, -1, dtype=torch.long, device=self.batch.device)  # B H W
        index[self.batch, self.ys, self.xs] = torch.arange(len(self.batch), device=self.batch.device)  # N writes
        return index

    def scatter(self, tokens: torch.Tensor) -> torch.Tensor:
        """The tokens as a dense B×C×H×W map, zero at masked sites."""
        dense = tokens.new_zeros(*self.shape, tokens.shape[1])  # B H W C
        dense[self.batch, self.ys, self.xs] = tokens  # N rows of C into their sites
        return dense.permute(0, 3, 1, 2)  # B C H W


def select_rows(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`rows.index_select(1, index)` for (S, R, D) rows, through the (R, D) matrix when S == 1: torch's CPU kernel
    gathers along dim 0 on all threads, along dim 1 on one (2026-12-05, half the time with two threads)."""
    if rows.shape[0] == 1:
        return rows[0].index_select(0, index).unsqueeze(0)
    return rows.index_select(1, index)


class GatherRows(torch.autograd.Function):
    """`rows[index]` along dim 1 of an (S, R, D) tensor, for an `index` that reads every row at most once.

    The backward is the gather `grad[inverse]`, where `inverse[r]` is the output row that read row r, then zeros
    written over the rows in `unread` (None: every row was read), whose `inverse` entries may be any output row:
    no scatter, no accumulation, no copy of the gradient.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor, unread: torch.Tensor | None
                ) -> torch.Tensor:  # fmt: skip
        ctx.save_for_backward(inverse, unread)
        return select_rows(rows, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        inverse, unread = ctx.saved_tensors
        grad_rows = select_rows(grad, inverse)
        if unread is not None:
            grad_rows.index_fill_(1, unread, 0.0)
        return grad_rows, None, None, None


def gather_rows(rows: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor, unread: torch.Tensor | None = None
                ) -> torch.Tensor:  # fmt: skip
    """`GatherRows` on an (S, R, D) tensor (see there)."""
    return GatherRows.apply(rows, index, inverse, unread)


class PackedQKV(torch.autograd.Function):
    """The (S, 3·heads·slots, d) packed q, k, v rows: each visible token's rows where the packing put it (a gather
    both ways).

    Where timm pads the grid to whole windows (`padding` given), padding sites and empty slots read qkv's bias
    (what timm's zero padding gives): their gradients merge there, a sum over the slots flagged in `padding`.
    Without timm padding (`padding` None) `index` points empty slots at any token row, and nothing is copied:
    attention never lets a token see an empty slot nor reads an empty slot's output, so an empty slot gets zero
    gradient, which the backward drops.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, bias_rows: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor,
                padding: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        ctx.save_for_backward(inverse, padding)
        ctx.bias_shape = bias_rows.shape
        if padding is not None:
            rows = torch.cat([rows, bias_rows.to(rows.dtype).expand(rows.shape[0], -1, -1)], 1)
        return select_rows(rows, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, None, None, None]:
        inverse, padding = ctx.saved_tensors
        grad_bias = None
        if padding is not None and ctx.needs_input_grad[1]:
            per_row = grad.view(grad.shape[0], ctx.bias_shape[0], -1, grad.shape[2])  # S, 3·heads, slots, d
            grad_bias = torch.einsum("srkd,k->rd", per_row, padding.to(grad.dtype))
        return select_rows(grad, inverse), grad_bias, None, None, None


class BinAttention(torch.autograd.Function):
    """softmax(q kᵀ · scale + bias) v over packed (S, 3, G, capacity, d) q, k, v bins with a (G, capacity,
    capacity) additive bias shared by the S samples; the backward gives the bias its gradient (the softmax
    gradient) in the same pass, and returns the q, k, v gradients as one packed tensor.

    One batched matmul each way and no mask checks: blocked pairs carry -inf in `bias`, and no row is fully
    blocked (`WindowPacking`). Runs in the inputs' dtype, autocast off.
    """

    @staticmethod
    def forward(ctx, packed: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
        samples, _, groups, capacity, dim = packed.shape
        with torch.autocast(packed.device.type, enabled=False):
            q, k, v = (packed[:, part].reshape(samples * groups, capacity, dim) for part in range(3))
            bias = bias.to(q.dtype).expand(samples, -1, -1, -1).reshape(samples * groups, capacity, capacity)
            probs = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=scale).softmax(-1)
            out = torch.bmm(probs, v)
        ctx.save_for_backward(q, k, v, probs)
        ctx.scale, ctx.shape = scale, packed.shape
        return out.view(samples, groups, capacity, dim)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        q, k, v, probs = ctx.saved_tensors
        samples = ctx.shape[0]
        with torch.autocast(q.device.type, enabled=False):
            grad_out = grad_out.reshape(q.shape).to(q.dtype)
            grad_scores = torch._softmax_backward_data(torch.bmm(grad_out, v.transpose(1, 2)), probs, -1, probs.dtype)
            grad_q = torch.bmm(grad_scores, k).mul_(ctx.scale)
            grad_k = torch.bmm(grad_scores.transpose(1, 2), q).mul_(ctx.scale)
            grad_v = torch.bmm(probs.transpose(1, 2), grad_out)
            grad = torch.stack([part.view(samples, -1, *q.shape[1:]) for part in (grad_q, grad_k, grad_v)], 1)
            grad_bias = grad_scores.view(samples, -1, *grad_scores.shape[1:])
            grad_bias = grad_bias[0] if samples == 1 else grad_bias.sum(0)
        return grad, grad_bias, None


def embed_visible_patches(patch_embed: nn.Module, images: torch.Tensor, sites: TokenSites) -> torch.Tensor:
    """timm's PatchEmbed (stride = kernel conv, then norm) on the visible patches only, as one matmul."""
    proj = patch_embed.proj
    patch_h, patch_w = proj.kernel_size
    batch, channels, height, width = images.shape
    patches = images.view(batch, channels, height // patch_h, patch_h, width // patch_w, patch_w)  # B C H p W p
    picked = patches.permute(0, 2, 4, 1, 3, 5)[sites.batch, sites.ys, sites.xs].flatten(1)  # N, C·p·p (as conv weight)
    return patch_embed.norm(F.linear(picked, proj.weight.flatten(1), proj.bias))  # N, embed


def merge_children(fine: TokenSites, coarse: TokenSites) -> torch.Tensor:
    """(coarse tokens, 4) index of each coarse site's 2×2 children among the fine tokens, in timm's merge order.

    Every child is visible since mask units align with every stride.
    """
    index = fine.index_map()  # B 2H 2W: fine token of each fine site
    children = [index[coarse.batch, 2 * coarse.ys + dy, 2 * coarse.xs + dx] for dy, dx in MERGE_ORDER]  # 4 × (N,)
    return torch.stack(children, 1)  # N, 4


def merge_visible_patches(
    downsample: PatchMerging, tokens: torch.Tensor, children: torch.Tensor, child_slot: torch.Tensor
) -> torch.Tensor:
    """timm's PatchMerging for the visible coarse sites, from their children's tokens (`merge_children`);
    `child_slot` is the inverse: each fine token's place in `children` (every fine token is one site's child)."""
    merged = gather_rows(tokens.unsqueeze(0), children.view(-1), child_slot)  # 1, 4·N_coarse, C
    return downsample.reduction(downsample.norm(merged.view(len(children), -1)))  # 4·C in timm's order


@dataclass(frozen=True)
class PackedMasks:
    """What attention derives from a packing once per step and shares between the blocks that use it."""

    blocked: torch.Tensor  # (bins, capacity, capacity) bool: pairs that may not attend each other
    bias_index: torch.Tensor | None  # (bins, capacity, capacity) bias-table rows, blocked: -inf rows (gather path)
    slot_one_hot: torch.Tensor | None  # (bins, capacity, window area) float32 (matmul path)


def packed_masks(packing: WindowPacking, by_matmul: bool) -> PackedMasks:
    """The packing's attention masks, for the bias built by one-hot matmuls (GPU) or by a gather (CPU)."""
    blocked = packing.blocked()
    if by_matmul:
        return PackedMasks(blocked, None, packing.slot_one_hot())
    spread = torch.arange(packing.capacity, device=blocked.device) % BLOCKED_ROWS  # by key slot
    return PackedMasks(blocked, packing.bias_index(blocked) + blocked * spread, None)


@dataclass(frozen=True)
class PackedRows:
    """The gather indices of one packing for blocks of `heads` heads, derived from the packing's host-built maps
    (`source`, `token_slot`, `tokenless_slots`) once per step and shared by the blocks that use it.

    Packed rows are laid out (S, 3, heads, bins, capacity, d): q, k, v of every head, bin and slot, so attention
    reads them as they lie; attention's output (S, heads, bins, capacity, d) unpacks to (S, tokens, heads, d).
    """

    qkv_index: torch.Tensor  # (3·heads·slots,) row of [token rows (T·3·heads); bias rows (3·heads) if padding]
    qkv_inverse: torch.Tensor  # (T·3·heads,) packed row of each token row
    out_index: torch.Tensor  # (T·heads,) packed output row of each token's head
    out_inverse: torch.Tensor  # (heads·slots,) token row of each packed output row (any row where none)
    out_unread: torch.Tensor | None  # packed output rows of slots without a token (None: every slot has one)
    padding: torch.Tensor | None  # (slots,) 1.0 at slots without a token: timm's padding or empty (None: no padding)


def packed_rows(packing: WindowPacking, heads: int) -> PackedRows:
    """The packing's gather indices for `heads` heads (see `PackedRows`)."""
    source, token_slot, tokenless = packing.source, packing.token_slot, packing.tokenless_slots  # (slots,), (T,), (E,)
    tokens, slots = len(token_slot), len(source)
    per_head = torch.arange(heads, device=source.device)
    per_row = torch.arange(3 * heads, device=source.device)
    no_token = source == tokens
    token_of_slot = source.masked_fill(no_token, 0)  # empty slots read token 0 (never attended: see PackedQKV)
    by_slot = (source if packing.has_padding else token_of_slot).view(1, -1)
    return PackedRows(
        qkv_index=(per_row.view(-1, 1) + 3 * heads * by_slot).view(-1),  # rows follow (token, row) in qkv's output
        qkv_inverse=(token_slot.view(-1, 1) + slots * per_row).view(-1),
        out_index=(token_slot.view(-1, 1) + slots * per_head).view(-1),
        out_inverse=(heads * token_of_slot + per_head.view(-1, 1)).view(-1),
        out_unread=(tokenless + slots * per_head.view(-1, 1)).view(-1) if len(tokenless) else None,
        padding=no_token.float() if packing.has_padding else None,
    )


def packed_window_attention(
    attn: WindowAttention, normed: torch.Tensor, packing: WindowPacking, masks: PackedMasks, rows: PackedRows
) -> torch.Tensor:
    """timm's WindowAttention over the packed bins: qkv and proj on visible tokens, attention in packed bins.

    With `packing.samples` = S > 1 (one mask shared by S samples) the bins of one sample are gathered from each
    sample's tokens and the bias of one sample serves all S (broadcast, not copied).
    """
    samples, bins, capacity, heads = packing.samples, packing.num_bins, packing.capacity, attn.num_heads
    channels = normed.shape[-1]
    qkv = attn.qkv(normed).view(samples, -1, channels // heads)  # S, T·3·heads, d
    bias_rows = attn.qkv.bias if attn.qkv.bias is not None else qkv.new_zeros(3 * channels)
    packed = PackedQKV.apply(qkv, bias_rows.view(3 * heads, -1), rows.qkv_index, rows.qkv_inverse, rows.padding)
    packed = packed.view(samples, 3, heads * bins, capacity, -1)  # S, q/k/v, heads·bins, cap, d
    dropout = attn.attn_drop.p if attn.training else 0.0
    if masks.slot_one_hot is None and dropout == 0.0:
        bias = packed_bias_by_gather(attn, masks).transpose(0, 1).reshape(heads * bins, capacity, capacity)
        out = BinAttention.apply(packed, bias, attn.scale)  # S, heads·bins, cap, d
    else:  # torch's attention: on a GPU, and for attention dropout (0 in timm's Swin configs)
        build = packed_bias_by_matmul if masks.slot_one_hot is not None else packed_bias_by_gather
        bias = build(attn, masks).transpose(0, 1).to(packed.dtype)  # heads, bins, cap, cap
        bias = bias.repeat(samples, 1, 1, 1) if samples > 1 else bias  # S·heads, bins, cap, cap
        query, key, value = (part.reshape(samples * heads, bins, capacity, -1) for part in packed.unbind(1))
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=bias, dropout_p=dropout, scale=attn.scale
        )  # S·heads, bins, cap, d
    out = gather_rows(out.reshape(samples, -1, out.shape[-1]), rows.out_index, rows.out_inverse, rows.out_unread)
    return attn.proj_drop(attn.proj(out.view(-1, channels)))  # from S, T·heads, d


class TableRows(torch.autograd.Function):
    """Columns `index` of a (heads, rows) table, and in the backward the sum of the gradients of every column
    that read a row (many pairs read one row: a real merge); both one `gather` / `scatter_add_` along the columns
    with the index broadcast over the heads, the fastest of torch's CPU kernels for this here with two threads
    (2026-12-05: `index_select` along dim 1 runs on one thread; its backward `index_add_` ran 25x slower with two
    threads than with one; a flat scatter over heads · pairs needs its index built per step)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.rows = table.shape[1]
        return table.gather(1, index.expand(table.shape[0], -1))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        heads = grad.shape[0]
        return grad.new_zeros(heads, ctx.rows).scatter_add_(1, index.expand(heads, -1), grad), None


def packed_bias_by_gather(attn: WindowAttention, masks: PackedMasks) -> torch.Tensor:
    """(bins, heads, capacity, capacity) bias + mask, gathered straight from the bias table (fast on the CPU)."""
    table = attn.relative_position_bias_table  # (2Wh-1)(2Ww-1), heads
    table = torch.cat([table, table.new_full((BLOCKED_ROWS, table.shape[1]), float("-inf"))]).t()  # heads, rows
    bias = TableRows.apply(table.contiguous(), masks.bias_index.view(-1))  # heads, bins · cap · cap
    return bias.view(-1, *masks.bias_index.shape).transpose(0, 1)


def packed_bias_by_matmul(attn: WindowAttention, masks: PackedMasks) -> torch.Tensor:
    """The same bias through one-hot matmuls around timm's per-window bias (fast on a GPU).

    The gather's backward accumulates millions of gradients into the ~169-row table with atomics, which on an
    H100 took 90 % of a Swin-T step; as matmuls the backward is a pair of GEMMs.
    """
    area = attn.relative_position_index.shape[0]
    window_bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)]  # area·area, heads
    window_bias = window_bias.view(area, area, -1).permute(2, 0, 1)  # (heads, area, area), as timm builds it
    one_hot = masks.slot_one_hot.to(window_bias.dtype)  # (bins, capacity, area)
    bias = torch.einsum("bip,hpq,bjq->bhij", one_hot, window_bias, one_hot)  # bins, heads, cap, cap
    return bias.masked_fill(masks.blocked.unsqueeze(1), float("-inf"))


def sample_drop_path(module: nn.Module, tokens: torch.Tensor, sites: TokenSites) -> torch.Tensor:
    """timm's per-sample stochastic depth on tokens of a packed batch (identity in eval or when disabled)."""
    if not isinstance(module, DropPath) or not module.training or module.drop_prob == 0.0:
        return module(tokens)
    keep_prob = 1.0 - module.drop_prob
    keep = tokens.new_empty(sites.shape[0]).bernoulli_(keep_prob)  # B: one draw per sample
    if keep_prob > 0.0 and module.scale_by_keep:
        keep = keep / keep_prob
    return tokens * keep[sites.batch].unsqueeze(1)  # N, C scaled by their sample's draw


def sparse_block(
    block: SwinTransformerBlock,
    tokens: torch.Tensor,
    sites: TokenSites,
    packing: WindowPacking,
    masks: PackedMasks,
    rows: PackedRows,
) -> torch.Tensor:
    """One SwinTransformerBlock on visible tokens: (shifted) window attention, then the MLP, both residual."""
    attended = packed_window_attention(block.attn, block.norm1(tokens), packing, masks, rows)
    tokens = tokens + sample_drop_path(block.drop_path1, attended, sites)
    return tokens + sample_drop_path(block.drop_path2, block.mlp(block.norm2(tokens)), sites)
