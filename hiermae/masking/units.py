"""Reshape between image-like maps and per-unit vectors (the mask unit is the loss's and the target's cell)."""

import torch


def to_units(maps: torch.Tensor, cell: int) -> torch.Tensor:
    """B×C×H×W → B×h×w×(cell·cell·C): one vector per `cell`×`cell` block."""
    batch, channels, height, width = maps.shape
    blocks = maps.reshape(batch, channels, height // cell, cell, width // cell, cell)
    return blocks.permute(0, 2, 4, 3, 5, 1).reshape(batch, height // cell, width // cell, cell * cell * channels)


def from_units(units: torch.Tensor, cell: int, channels: int) -> torch.Tensor:
    """Inverse of `to_units`: B×h×w×(cell·cell·C) → B×C×H×W."""
    batch, height, width, _ = units.shape
    blocks = units.reshape(batch, height, width, cell, cell, channels)
    return blocks.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, height * cell, width * cell)
