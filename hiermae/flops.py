"""FLOPs actually computed by an encoder: fvcore's traced count plus what custom ops report while running.

Convention (fvcore's): one fused multiply-add counts as one FLOP; elementwise ops and data movement (gathers,
scatters) count zero. fvcore counts every traced matmul, conv and norm from its shapes, which is exactly the work
done for the sparse path too: its convs run on visible-site rows or unit tiles. Two kinds of op need help:

- `aten::scaled_dot_product_attention` (packed window attention in Swin, ViT) gets a handle here;
- ops inside custom autograd Functions or extensions (spconv) trace as opaque `prim::PythonOp` nodes whose
  shapes do not tell the work (spconv's work is its number of index pairs), so such ops call `record_flops`
  while counting is active, and `count_flops` adds what they recorded.
"""

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

_active = threading.local()


def record_flops(flops: int) -> None:
    """Called by custom ops with the work they did; a no-op unless `count_flops` is running."""
    counter = getattr(_active, "counter", None)
    if counter is not None:
        counter[0] += int(flops)


@contextlib.contextmanager
def recording() -> Iterator[list[int]]:
    """Collect `record_flops` calls made inside the block into a one-element list."""
    previous = getattr(_active, "counter", None)
    _active.counter = [0]
    try:
        yield _active.counter
    finally:
        _active.counter = previous


def sdpa_flop_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """scaled_dot_product_attention: QKᵀ (L·S·E) plus attention × V (L·S·Ev) per batch and head."""
    from fvcore.nn.jit_handles import get_shape

    query, key, value = (get_shape(inputs[i]) for i in range(3))
    batch = math.prod(query[:-2])
    length, embed, source, value_dim = query[-2], query[-1], key[-2], value[-1]
    return batch * length * source * (embed + value_dim)


def zero_flop_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """For opaque custom ops whose work is reported through `record_flops` instead."""
    return 0


CUSTOM_OP_HANDLES = {
    "aten::scaled_dot_product_attention": sdpa_flop_handle,
    "prim::PythonOp.SubMConvFunction": zero_flop_handle,
    "prim::PythonOp.SparseConvFunction": zero_flop_handle,
}


def count_flops(module: nn.Module, inputs: tuple[Any, ...]) -> int:
    """Total FLOPs (multiply-adds) of one `module(*inputs)` call, in the module's current train/eval mode."""
    with recording() as recorded, torch.no_grad():
        analysis = FlopCountAnalysis(module, inputs).set_op_handle(**CUSTOM_OP_HANDLES)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        traced = analysis.total()
    return int(traced) + recorded[0]
