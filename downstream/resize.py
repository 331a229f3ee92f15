"""Adapt size-dependent weights to a target model: Swin relative-position tables and ViT position embeddings."""

import math

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from torch import nn

from hiermae.downstream.checkpoints import CheckpointError


def resize_relative_position_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """Bicubically resize a Swin bias table ((2w-1)² × heads) to `length` rows, i.e. another window size."""
    old_side, new_side = math.isqrt(table.shape[0]), math.isqrt(length)
    if old_side**2 != table.shape[0] or new_side**2 != length:
        raise CheckpointError(f"relative position tables must be square, got {table.shape[0]} → {length} rows")
    grid = table.T.reshape(1, table.shape[1], old_side, old_side).float()
    resized = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    return resized.reshape(table.shape[1], length).T.contiguous().to(table.dtype)


def resize_position_embedding(embedding: torch.Tensor, tokens: int, prefix_tokens: int) -> torch.Tensor:
    """Resample a ViT position embedding (1 × (prefix + g²) × C) to `tokens` entries on a square grid."""
    side = math.isqrt(tokens - prefix_tokens)
    if side**2 != tokens - prefix_tokens:
        raise CheckpointError(f"position embedding of {tokens} tokens is not a square grid plus {prefix_tokens}")
    return resample_abs_pos_embed(embedding, new_size=[side, side], num_prefix_tokens=prefix_tokens)


def fit_to_target(weights: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Resize the size-dependent tensors whose shapes differ from `model`'s; returns (weights, what changed).

    Any other shape difference is left for the strict load to report.
    """
    target = model.state_dict()
    prefix_tokens = 0 if getattr(model, "no_embed_class", True) else getattr(model, "num_prefix_tokens", 0)
    fitted, changes = dict(weights), []
    for key, value in weights.items():
        wanted = target.get(key)
        if wanted is None or wanted.shape == value.shape:
            continue
        if key.endswith("relative_position_bias_table") and value.shape[1] == wanted.shape[1]:
            fitted[key] = resize_relative_position_table(value, wanted.shape[0])
        elif key == "pos_embed" and value.shape[-1] == wanted.shape[-1]:
            fitted[key] = resize_position_embedding(value, wanted.shape[1], prefix_tokens)
        else:
            continue
        changes.append(f"resized {key}: {tuple(value.shape)} → {tuple(wanted.shape)}")
    return fitted, changes
