"""timm Swin weights renamed for mmdet's / mmseg's own `SwinTransformer` (both ship the same one), and the arguments
that rebuild a timm Swin there.

mmdet runs patch merging through `nn.Unfold` (channel order c, dy, dx) where timm concatenates 2×2 neighbours
(order dx, dy, c), puts the downsample at the end of a stage instead of the start, and names the output norm of
each stage `norm<i>`. Pure functions over state dicts: nothing here imports mmdet.
"""

import re

import timm
import torch

SWIN_RENAMES = (
    (r"^patch_embed\.proj\.", "patch_embed.projection."),
    (r"\.attn\.", ".attn.w_msa."),
    (r"\.mlp\.fc1\.", ".ffn.layers.0.0."),
    (r"\.mlp\.fc2\.", ".ffn.layers.1."),
    (r"^layers\.", "stages."),
)


def unfold_order(tensor: torch.Tensor) -> torch.Tensor:
    """Reorder the last dim of a patch-merging weight from timm's (dx, dy, c) to nn.Unfold's (c, dy, dx)."""
    channels = tensor.shape[-1] // 4
    grouped = tensor.reshape(*tensor.shape[:-1], 2, 2, channels)  # (..., dx, dy, c)
    return grouped.movedim(-1, -3).transpose(-1, -2).reshape(tensor.shape).contiguous()


def swin_to_mm(weights: dict[str, torch.Tensor], out_indices: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """timm SwinTransformer → mmdet/mmseg `SwinTransformer`; timm's final norm becomes `norm<last>` if output."""
    last = max(int(k.split(".")[1]) for k in weights if k.startswith("layers."))
    mapped = {}
    for key, value in weights.items():
        merging = re.match(r"^layers\.(\d+)\.downsample\.(reduction|norm)\.(.+)$", key)
        if merging:
            stage, part, name = merging.groups()
            mapped[f"stages.{int(stage) - 1}.downsample.{part}.{name}"] = unfold_order(value)
            continue
        if key.startswith("norm."):
            if last in out_indices:
                mapped[f"norm{last}.{key[len('norm.') :]}"] = value
            continue
        for pattern, replacement in SWIN_RENAMES:
            key = re.sub(pattern, replacement, key)
        mapped[key] = value
    return mapped


def swin_mm_arch(backbone: str) -> dict:
    """mmdet/mmseg SwinTransformer arguments that rebuild the architecture of timm's `backbone`."""
    window = re.search(r"window(\d+)", backbone)
    if window is None:
        raise ValueError(f"{backbone} does not name its window size (e.g. swin_tiny_patch4_window7_224)")
    model = timm.create_model(backbone, pretrained=False)
    first = model.layers[0].blocks[0]
    return dict(
        embed_dims=model.embed_dim,
        depths=tuple(len(layer.blocks) for layer in model.layers),
        num_heads=tuple(layer.blocks[0].attn.num_heads for layer in model.layers),
        window_size=int(window.group(1)),
        mlp_ratio=round(first.mlp.fc1.out_features / first.mlp.fc1.in_features),
        patch_size=model.patch_embed.patch_size[0],
        strides=(model.patch_embed.patch_size[0], 2, 2, 2),
        qkv_bias=first.attn.qkv.bias is not None,
    )
