"""Device→host synchronisations and op launches of one Swin forward+backward: sparse against the dense reference.

    python benchmarks/swin_host_syncs.py [--device cpu|cuda] [--batch 8] [--input 224] [--mask-ratio 0.75]

On a GPU, launch overhead and host synchronisations (not FLOPs) bound the sparse Swin at moderate batch sizes.
This counts them without a GPU: a `TorchDispatchMode` sees every aten op of one training-mode step
(swin_tiny_patch4_window7_224, random mask) and classifies it, per phase:
- syncs: ops that make the host wait for the device on CUDA: data-dependent output shapes (nonzero, unique,
  masked_select, indexing with a bool mask, repeat_interleave without output_size, bincount), scalar reads
  (item, bool(), tolist), device→host copies and blocking host→device copies (`torch.tensor(data)` on the device);
- device ops: every other aten op run on the device, views excluded (a proxy for kernel launches);
- host ops: ops on CPU tensors while the device computes (only the sparse plan's host phase has them).
Phases: `plan (host)` (`SwinEncoder.host_plan`, on a CPU copy of the mask), `plan (device)` (the rest of
`SwinEncoder.plan`), `forward` (embedding, blocks, merging), `backward`.
On `--device cuda` an op is a device op when a tensor it touches is on the GPU. On the CPU (emulation) every op
outside the host phase counts as a device op, and `.cpu()` / `.to("cpu")` there as a device→host copy.
`sparse, GPU bias path` runs on the CPU with the bias built as on a GPU (`packed_bias_by_matmul`).
"""

import argparse
import collections
import contextlib
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from hiermae.backbones import swin_sparse
from hiermae.backbones.swin import SwinEncoder
from hiermae.encoders import build_encoder
from hiermae.masks import RandomMask

aten = torch.ops.aten
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
NOT_LAUNCHED = {
    aten.empty,
    aten.empty_strided,
    aten.new_empty,
    aten._unsafe_view,
    aten.lift_fresh,
    aten.detach,
    aten.alias,
}


class Tally:
    """Counts per phase: syncs (and which ops), device ops, host ops."""

    def __init__(self) -> None:
        self.phase = "forward"
        self.syncs: collections.Counter[tuple[str, str]] = collections.Counter()
        self.device_ops: collections.Counter[str] = collections.Counter()
        self.host_ops: collections.Counter[str] = collections.Counter()

    def sync(self, name: str) -> None:
        self.syncs[self.phase, name] += 1

    @contextlib.contextmanager
    def during(self, phase: str) -> Iterator[None]:
        previous, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = previous


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


class SyncCounter(TorchDispatchMode):
    """Classifies every aten op into the tally (see the module docstring)."""

    def __init__(self, tally: Tally, on_gpu: bool) -> None:
        super().__init__()
        self.tally, self.on_gpu, self.paused = tally, on_gpu, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if self.paused:
            return result
        touched = tensors_in((args, kwargs, result))
        on_device = any(t.is_cuda for t in touched) if self.on_gpu else self.tally.phase != "plan (host)"
        if not on_device:
            self.tally.host_ops[self.tally.phase] += 1
            return result
        reason = sync_reason(func, args, kwargs)
        if self.on_gpu and func.overloadpacket in COPY_PACKETS:
            reason = copy_sync_reason(func, args, kwargs, result)
        if reason is not None:
            self.tally.sync(reason)
        elif not func.is_view and func.overloadpacket not in NOT_LAUNCHED:
            self.tally.device_ops[self.tally.phase] += 1
        return result


def copy_sync_reason(func: torch._ops.OpOverload, args: tuple, kwargs: dict, result: Any) -> str | None:
    """On a GPU: device→host copies, and host→device copies that are not non_blocking, make the host wait."""
    source = args[1] if func.overloadpacket is aten.copy_ else args[0]
    target = args[0] if func.overloadpacket is aten.copy_ else result
    if source.is_cuda and not target.is_cuda:
        return "device→host copy"
    non_blocking = argument(func, args, kwargs, "non_blocking")
    if target.is_cuda and not source.is_cuda and not non_blocking:
        return "blocking host→device copy"
    return None


class ScalarReads(TorchFunctionMode):
    """`tolist` (one copy, invisible to the dispatch mode on the CPU) and, on the CPU, `.cpu()` of device data."""

    def __init__(self, counter: SyncCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tally = self.counter.tally
        host_phase = tally.phase == "plan (host)"
        if func is torch.Tensor.tolist and not host_phase and not self.counter.paused:
            tally.sync("tolist")
            self.counter.paused = True
            try:
                return func(*args, **kwargs)
            finally:
                self.counter.paused = False
        if not self.counter.on_gpu and not host_phase and is_host_copy(func, args, kwargs):
            tally.sync("device→host copy")
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
def phase_wrappers(tally: Tally) -> Iterator[None]:
    """Run `SwinEncoder.plan` in phase `plan (device)` and `SwinEncoder.host_plan` in `plan (host)`."""
    with contextlib.ExitStack() as stack:
        for attribute, phase in (("plan", "plan (device)"), ("host_plan", "plan (host)")):
            if hasattr(SwinEncoder, attribute):
                method = getattr(SwinEncoder, attribute)
                stack.enter_context(mock.patch.object(SwinEncoder, attribute, in_phase(tally, phase, method)))
        yield


def in_phase(tally: Tally, phase: str, method: Callable) -> Callable:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with tally.during(phase):
            return method(*args, **kwargs)

    return wrapped


def count_step(encoder: torch.nn.Module, images: torch.Tensor, visible: torch.Tensor, on_gpu: bool) -> Tally:
    """Counts of one forward+backward (loss = Σ mean of the stage maps)."""
    tally = Tally()
    counter = SyncCounter(tally, on_gpu)
    with phase_wrappers(tally), ScalarReads(counter), counter:
        outputs = encoder(images, visible)
        loss = sum(output.float().mean() for output in outputs)
        with tally.during("backward"):
            loss.backward()
    if on_gpu:
        torch.cuda.synchronize()
    return tally


def report(label: str, tally: Tally) -> None:
    """One line per phase, then the sync ops by name."""
    phases = ["plan (host)", "plan (device)", "forward", "backward"]
    print(f"\n{label}")
    print(f"  {'phase':<14} {'syncs':>6} {'device ops':>11} {'host ops':>9}")
    for phase in phases:
        syncs = sum(n for (p, _), n in tally.syncs.items() if p == phase)
        print(f"  {phase:<14} {syncs:>6} {tally.device_ops[phase]:>11} {tally.host_ops[phase]:>9}")
    total_syncs = sum(tally.syncs.values())
    total_device, total_host = sum(tally.device_ops.values()), sum(tally.host_ops.values())
    print(f"  {'total':<14} {total_syncs:>6} {total_device:>11} {total_host:>9}")
    for (phase, name), n in sorted(tally.syncs.items()):
        print(f"    {phase}: {name} ×{n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="swin_tiny_patch4_window7_224")
    parser.add_argument("--input", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    on_gpu = args.device == "cuda"
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.input, args.input).to(args.device)
    grid = (args.input // 32, args.input // 32)
    visible = RandomMask(args.mask_ratio)(args.batch, grid, torch.arange(args.batch)).to(args.device)
    runs = [("dense reference", False, False), ("sparse", True, False)]
    if not on_gpu:
        runs.append(("sparse, GPU bias path", True, True))
    print(f"{args.backbone}, {args.input} px, batch {args.batch}, mask {args.mask_ratio}, {args.device}")
    for label, sparse, gpu_bias in runs:
        encoder = build_encoder(args.backbone, sparse=sparse, input_size=args.input).to(args.device).train()
        encoder(images, visible)  # warm-up outside the count (lazy initialisation)
        bias_path = swin_sparse.packed_bias_by_matmul if gpu_bias else swin_sparse.packed_bias_by_gather
        with mock.patch.object(swin_sparse, "packed_bias_by_gather", bias_path):
            report(label, count_step(encoder, images, visible, on_gpu))


if __name__ == "__main__":
    main()
