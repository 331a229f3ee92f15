"""timm Swin's modules executed on visible tokens only: patch embedding, packed window attention, patch merging.

Each function takes a timm submodule and runs its own weights on an (N, C) tensor of visible tokens whose sites
are given by `TokenSites`; with every site visible the results equal timm's dense forward.
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


def merge_visible_patches(downsample: PatchMerging, tokens: torch.Tensor, children: torch.Tensor) -> torch.Tensor:
    """timm's PatchMerging for the visible coarse sites, from their children's tokens (`merge_children`)."""
    merged = tokens[children].flatten(1)  # N_coarse, 4·C in timm's concatenation order
    return downsample.reduction(downsample.norm(merged))


@dataclass(frozen=True)
class PackedMasks:
    """What attention derives from a packing once per step and shares between the blocks that use it."""

    blocked: torch.Tensor  # (bins, capacity, capacity) bool: pairs that may not attend each other
    bias_index: torch.Tensor | None  # (bins, capacity, capacity) bias-table rows (gather path)
    slot_one_hot: torch.Tensor | None  # (bins, capacity, window area) float32 (matmul path)


def packed_masks(packing: WindowPacking, by_matmul: bool) -> PackedMasks:
    """The packing's attention masks, for the bias built by one-hot matmuls (GPU) or by a gather (CPU)."""
    blocked = packing.blocked()
    if by_matmul:
        return PackedMasks(blocked, None, packing.slot_one_hot())
    return PackedMasks(blocked, packing.bias_index(blocked), None)


def packed_window_attention(
    attn: WindowAttention, normed: torch.Tensor, packing: WindowPacking, masks: PackedMasks
) -> torch.Tensor:
    """timm's WindowAttention over the packed bins: qkv and proj on visible tokens, SDPA with bias + group mask.

    With `packing.samples` = S > 1 (one mask shared by S samples) the bins of one sample are gathered from each
    sample's tokens and the bias of one sample serves all S (broadcast, not copied).
    """
    samples, bins, capacity = packing.samples, packing.num_bins, packing.capacity
    normed = F.pad(normed.view(samples, -1, normed.shape[-1]), (0, 0, 0, 1))  # S, T + 1, C (T tokens per sample)
    rows = attn.qkv(normed)  # the appended zero row feeds padding sites (timm pads with zeros) and empty slots
    packed = rows[:, packing.source].view(samples, bins, capacity, 3, attn.num_heads, -1)  # S, bins, cap, 3, h, d
    query, key, value = packed.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each S, bins, h, cap, d
    bias = packed_bias_by_matmul(attn, masks) if masks.slot_one_hot is not None else packed_bias_by_gather(attn, masks)
    bias = bias.to(query.dtype)  # bins, h, cap, cap
    if samples == 1:
        query, key, value = query[0], key[0], value[0]
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=bias, dropout_p=attn.attn_drop.p if attn.training else 0.0, scale=attn.scale
    )  # [S,] bins, h, cap, d
    out = out.reshape(samples, bins, attn.num_heads, capacity, -1).transpose(2, 3)  # S, bins, cap, h, d
    out = out[:, packing.token_bin, packing.token_offset].reshape(-1, normed.shape[-1])  # N, C
    return attn.proj_drop(attn.proj(out))


def packed_bias_by_gather(attn: WindowAttention, masks: PackedMasks) -> torch.Tensor:
    """(bins, heads, capacity, capacity) bias + mask, gathered straight from the bias table (fast on the CPU)."""
    table = attn.relative_position_bias_table  # (2Wh-1)(2Ww-1), heads
    table = torch.cat([table, table.new_full((1, table.shape[1]), float("-inf"))])  # + the blocked row
    return table.t()[:, masks.bias_index].transpose(0, 1)  # heads, bins, cap, cap -> bins, heads, cap, cap


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
    block: SwinTransformerBlock, tokens: torch.Tensor, sites: TokenSites, packing: WindowPacking, masks: PackedMasks
) -> torch.Tensor:
    """One SwinTransformerBlock on visible tokens: (shifted) window attention, then the MLP, both residual."""
    attended = packed_window_attention(block.attn, block.norm1(tokens), packing, masks)
    tokens = tokens + sample_drop_path(block.drop_path1, attended, sites)
    return tokens + sample_drop_path(block.drop_path2, block.mlp(block.norm2(tokens)), sites)
