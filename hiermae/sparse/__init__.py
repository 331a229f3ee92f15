"""Sparse computation on the visible sites of unit-aligned masks, and its masked-dense reference."""

from hiermae.sparse.engine import Engine, FeatureMap
from hiermae.sparse.masked_dense import MaskedDenseEngine
from hiermae.sparse.sparse_engine import SparseEngine

__all__ = ["Engine", "FeatureMap", "MaskedDenseEngine", "SparseEngine"]
