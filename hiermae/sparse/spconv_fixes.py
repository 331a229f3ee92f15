"""Runtime workarounds for spconv 2.3.8 bugs on CPU (installed files stay untouched).

1. The backward pass asks `torch.cuda.current_stream()` even for CPU tensors, which raises on CPU-only torch:
   `spconv.pytorch.ops.get_current_stream` is replaced by one that returns stream 0 without CUDA.
2. `SpconvOps.scatter_add_cpu` races when OpenMP runs more than one thread (wrong forward results): the ops
   module's `SpconvOps` is replaced by a proxy whose `scatter_add_cpu` is torch's `index_add_`.
3. Non-contiguous index tensors give silently wrong results: `spconv_indices` is the one way this package
   builds spconv indices (int32, contiguous).
"""

from typing import Any

import torch

_applied = False


def current_stream_or_zero() -> int:
    """The CUDA stream handle when CUDA is in use, else 0 (what spconv's CPU kernels expect)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.current_stream().cuda_stream
    return 0


class SerialScatterOps:
    """Delegates to spconv's `SpconvOps`, with a race-free `scatter_add_cpu`."""

    def __init__(self, ops: Any) -> None:
        self._ops = ops

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ops, name)

    @staticmethod
    def scatter_add_cpu(out: Any, buffer: Any, indices: Any) -> None:
        """out[indices[i]] += buffer[i] on the tensorview tensors, via torch.index_add_ (shared memory)."""
        index = torch.from_numpy(indices.numpy_view()).long()
        rows = torch.from_numpy(buffer.numpy_view())[: index.shape[0]]
        torch.from_numpy(out.numpy_view()).index_add_(0, index, rows)


def apply_spconv_fixes() -> None:
    """Install workarounds 1 and 2 (idempotent)."""
    global _applied
    if _applied:
        return
    from spconv.pytorch import hash as spconv_hash
    from spconv.pytorch import ops

    ops.get_current_stream = current_stream_or_zero
    spconv_hash.get_current_stream = current_stream_or_zero
    ops.SpconvOps = SerialScatterOps(ops.SpconvOps)
    _applied = True


def spconv_indices(index: torch.Tensor) -> torch.Tensor:
    """(N, 1 + ndim) batch-first coordinates as spconv needs them: int32 and contiguous (workaround 3)."""
    return index.int().contiguous()
