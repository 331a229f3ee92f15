"""Sparse computation on the visible sites of unit-aligned masks, and its masked-dense reference."""

from hiermae.sparse.backends import BackendChoice, measured_backend
from hiermae.sparse.engine import Engine, FeatureMap
from hiermae.sparse.masked_dense import MaskedDenseEngine
from hiermae.sparse.norm import AllReduceBatchNorm2d
from hiermae.sparse.sites import SitePlan, TableKey, build_site_plan
from hiermae.sparse.sparse_engine import SparseEngine

__all__ = [
    "AllReduceBatchNorm2d", "BackendChoice", "Engine", "FeatureMap", "MaskedDenseEngine", "SitePlan", "SparseEngine",
    "TableKey", "build_site_plan", "measured_backend"
]
