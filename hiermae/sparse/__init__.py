"""Sparse computation on the visible sites of unit-aligned masks, and its masked-dense reference."""

import torch

from hiermae.sparse.engine import Engine, FeatureMap
from hiermae.sparse.masked_dense import MaskedDenseEngine
from hiermae.sparse.sparse_engine import SparseEngine

__all__ = ["Engine", "FeatureMap", "MaskedDenseEngine", "SparseEngine", "build_engine"]


def build_engine(visible: torch.Tensor, unit: int, *, sparse: bool) -> Engine:
    """The engine for one batch: visible-site computation, or the masked-dense reference when `sparse=False`."""
    return SparseEngine(visible, unit) if sparse else MaskedDenseEngine(visible, unit)
