"""Count the device→host synchronisations and device op launches of a piece of torch code, without a GPU.

On a GPU, a sparse step is bound by launch overhead and by every point where the host waits for the device (a
data-dependent shape, a scalar read, a copy back). `SyncCounter` is a dispatch mode that sees every aten op and
classifies it:
- syncs: ops that make the host wait on CUDA: data-dependent output shapes (nonzero, unique, masked_select,
  indexing with a bool mask, repeat_interleave without output_size, bincount), scalar reads (item, bool(),
  tolist), device→host copies and blocking host→device copies;
- device ops: every other aten op run on the device, views and allocations excluded (a proxy for launches);
- host ops: ops on CPU tensors during a phase marked as host work (planning).
With `on_gpu=False` (emulation on the CPU) every op outside a host phase counts as a device op, and `.cpu()` /
`.to("cpu")` / `.tolist()` there as device→host copies. `benchmarks/host_syncs.py` reports the counts per
family; the tests assert that a planned sparse step has none.
"""

import collections
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
HOST_PHASES = ("plan (host)",)
# ops whose output shape depends on the data, or that read a scalar back: the host waits for the device
SYNC_PACKETS = {
    aten.nonzero,
    aten._unique,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
    aten.unique_dim_consecutive,
    aten.masked_select,
    aten._local_scalar_dense,
    aten.is_nonzero,
    aten.equal,
    aten.bincount,
}
INDEX_PACKETS = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}
COPY_PACKETS = {aten._to_copy, aten.copy_}
# allocations, views and wrappers that launch no kernel
NOT_LAUNCHED = {aten.empty, aten.empty_strided, aten.new_empty, aten._unsafe_view, aten.lift_fresh, aten.detach,
                aten.alias}  # fmt: skip


class Tally:
    """Counts per phase: syncs (and which ops), device ops, host ops."""

    def __init__(self) -> None:
        self.phase = "forward"
        self.syncs: collections.Counter[tuple[str, str]] = collections.Counter()
        self.device_ops: collections.Counter[str] = collections.Counter()
        self.host_ops: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def during(self, phase: str) -> Iterator[None]:
        """Count what runs inside the block under `phase`."""
        previous, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = previous

    def total_syncs(self, phase: str | None = None) -> int:
        return sum(n for (p, _), n in self.syncs.items() if phase is None or p == phase)

    def sync_names(self) -> list[str]:
        """'phase: op ×n' for every sync."""
        return [f"{phase}: {name} ×{n}" for (phase, name), n in sorted(self.syncs.items())]


def tensors_in(args: Any) -> list[torch.Tensor]:
    """Every tensor in a nest of lists, tuples and dicts."""
    if isinstance(args, torch.Tensor):
        return [args]
    if isinstance(args, (list, tuple)):
        return [t for item in args for t in tensors_in(item)]
    if isinstance(args, dict):
        return tensors_in(list(args.values()))
    return []


def argument(func: torch._ops.OpOverload, args: tuple, kwargs: dict, name: str) -> Any:
    """The value of argument `name` of an op call, by its schema (None when left at its default)."""
    names = [schema_argument.name for schema_argument in func._schema.arguments]
    position = names.index(name) if name in names else len(args)
    return args[position] if position < len(args) else kwargs.get(name)


def sync_reason(func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> str | None:
    """Why this op makes the host wait for the device (None if it does not)."""
    packet = func.overloadpacket
    if packet in SYNC_PACKETS:
        return packet.__name__
    if packet in INDEX_PACKETS and any(t.dtype in (torch.bool, torch.uint8) for t in tensors_in(args[1])):
        return f"{packet.__name__} (bool mask)"
    if packet is aten.repeat_interleave and func._overloadname != "self_int":
        if argument(func, args, kwargs, "output_size") is None:
            return "repeat_interleave (no output_size)"
    if packet is aten.lift_fresh and args[0].dim() > 0:  # 0-dim: a Python scalar, written without a copy
        return "torch.tensor(data) on the device"
    return None


def copy_sync_reason(func: torch._ops.OpOverload, args: tuple, kwargs: dict, result: Any) -> str | None:
    """On a GPU: device→host copies, and host→device copies that are not non_blocking, make the host wait."""
    source = args[1] if func.overloadpacket is aten.copy_ else args[0]
    target = args[0] if func.overloadpacket is aten.copy_ else result
    if source.is_cuda and not target.is_cuda:
        return "device→host copy"
    if target.is_cuda and not source.is_cuda and not argument(func, args, kwargs, "non_blocking"):
        return "blocking host→device copy"
    return None


class SyncCounter(TorchDispatchMode):
    """Classifies every aten op into `tally` (see the module docstring)."""

    def __init__(self, tally: Tally, on_gpu: bool) -> None:
        super().__init__()
        self.tally, self.on_gpu, self.paused = tally, on_gpu, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if self.paused:
            return result
        touched = tensors_in((args, kwargs, result))
        on_device = any(t.is_cuda for t in touched) if self.on_gpu else self.tally.phase not in HOST_PHASES
        if not on_device:
            self.tally.host_ops[self.tally.phase] += 1
            return result
        reason = sync_reason(func, args, kwargs)
        if self.on_gpu and func.overloadpacket in COPY_PACKETS:
            reason = copy_sync_reason(func, args, kwargs, result)
        if reason is not None:
            self.tally.syncs[self.tally.phase, reason] += 1
        elif not func.is_view and func.overloadpacket not in NOT_LAUNCHED:
            self.tally.device_ops[self.tally.phase] += 1
        return result


class ScalarReads(TorchFunctionMode):
    """`tolist` (one copy, invisible to the dispatch mode on the CPU) and, in CPU emulation, `.cpu()` of data
    that stands for device data."""

    def __init__(self, counter: SyncCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        tally = self.counter.tally
        host_phase = tally.phase in HOST_PHASES
        if func is torch.Tensor.tolist and not host_phase and not self.counter.paused:
            tally.syncs[tally.phase, "tolist"] += 1
            self.counter.paused = True
            try:
                return func(*args, **kwargs)
            finally:
                self.counter.paused = False
        if not self.counter.on_gpu and not host_phase and is_host_copy(func, args, kwargs):
            tally.syncs[tally.phase, "device→host copy"] += 1
        return func(*args, **kwargs)


def is_host_copy(func: Callable, args: tuple, kwargs: dict) -> bool:
    """`tensor.cpu()` or `tensor.to("cpu"...)`."""
    if func is torch.Tensor.cpu:
        return True
    if func is torch.Tensor.to:
        target = kwargs.get("device", args[1] if len(args) > 1 else None)
        return isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu"
    return False


@contextlib.contextmanager
def counting(on_gpu: bool) -> Iterator[Tally]:
    """Count every op run inside the block; mark host work with `tally.during("plan (host)")`."""
    tally = Tally()
    counter = SyncCounter(tally, on_gpu)
    with ScalarReads(counter), counter:
        yield tally
