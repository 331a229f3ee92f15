"""Host-built plans: trees of small index tensors that say where a sparse encoder computes for one batch's mask.

A plan is built on the CPU from the mask (in a data-loader worker under `tools/train.py`), so the device never
waits for the host inside a step: every data-dependent shape is decided before the step starts. A plan is any
tree of dataclasses, lists, tuples and dicts whose leaves are tensors or plain Python values; `to_device` sends all
of its tensors in one non-blocking copy.
"""

from collections.abc import Callable
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

import torch

T = TypeVar("T")
ALIGNMENT = 16  # bytes: every tensor's slice of the packed buffer starts at a multiple of this


def map_tensors(tree: T, function: Callable[[torch.Tensor], torch.Tensor], memo: dict | None = None) -> T:
    """`tree` with `function` applied to its tensors; nodes shared inside the tree stay shared."""
    memo = {} if memo is None else memo
    if id(tree) in memo:
        return memo[id(tree)]
    if isinstance(tree, torch.Tensor):
        mapped = function(tree)
    elif isinstance(tree, list):
        mapped = [map_tensors(item, function, memo) for item in tree]
    elif isinstance(tree, tuple) and not hasattr(tree, "_fields"):
        mapped = tuple(map_tensors(item, function, memo) for item in tree)
    elif isinstance(tree, dict):
        mapped = {key: map_tensors(value, function, memo) for key, value in tree.items()}
    elif is_dataclass(tree) and not isinstance(tree, type):
        changes = {field.name: map_tensors(getattr(tree, field.name), function, memo) for field in fields(tree)}
        unchanged = all(value is getattr(tree, name) for name, value in changes.items())
        mapped = tree if unchanged else replace(tree, **changes)
    else:
        return tree
    memo[id(tree)] = mapped
    return mapped


def tensor_leaves(tree: Any) -> list[torch.Tensor]:
    """The tensors held by a tree, each once, in a fixed order."""
    leaves: dict[int, torch.Tensor] = {}
    map_tensors(tree, lambda tensor: leaves.setdefault(id(tensor), tensor))
    return list(leaves.values())


def to_device(tree: T, device: torch.device | str, pin: bool | None = None) -> T:
    """`tree` with its CPU tensors on `device`, sent as one byte buffer in one copy the host does not wait for.

    The tensors (any dtypes) are laid out in one uint8 buffer, each at an aligned offset, pinned for CUDA so the
    copy is asynchronous; the device's stream runs the copy before any kernel that reads the views of it. A CPU
    `device` returns `tree` itself.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return tree
    host = [tensor for tensor in tensor_leaves(tree) if tensor.device.type == "cpu"]
    if not host:
        return tree
    offsets, total = [], 0
    for tensor in host:
        offsets.append(total)
        total += -(-tensor.numel() * tensor.element_size() // ALIGNMENT) * ALIGNMENT
    pin = device.type == "cuda" if pin is None else pin
    buffer = torch.empty(total, dtype=torch.uint8, pin_memory=pin)
    for tensor, offset in zip(host, offsets, strict=True):
        size = tensor.numel() * tensor.element_size()
        buffer[offset : offset + size] = tensor.contiguous().reshape(-1).view(torch.uint8)
    on_device = buffer.to(device, non_blocking=True)
    moved = {}
    for tensor, offset in zip(host, offsets, strict=True):
        size = tensor.numel() * tensor.element_size()
        moved[id(tensor)] = on_device[offset : offset + size].view(tensor.dtype).view(tensor.shape)
    return map_tensors(tree, lambda tensor: moved.get(id(tensor), tensor))
