"""Comparing a checkpoint's keys with a model's, finding its non-finite tensors, and the error every checkpoint
check raises.

Core code (resume and `load_from` checks) and the export and transfer code in `downstream/` share these, so they
live in the core: dependencies go one way, core → downstream → tools.
"""

from collections.abc import Iterator

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, unsafe, of another backbone, or not matching its target."""


def key_mismatches(
    expected: dict[str, torch.Tensor],
    found: dict[str, torch.Tensor],
    label: str = "",
    shape_exempt: tuple[str, ...] = (),
) -> tuple[list[str], list[str], list[str]]:
    """Keys of `expected` missing from `found`, keys of `found` not expected, and "key: shape vs {label}shape" for
    shared keys whose shapes differ (keys ending in one of `shape_exempt` may differ)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong_shape = [
        f"{key}: {tuple(found[key].shape)} vs {label}{tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(found))
        if isinstance(found[key], torch.Tensor)
        and found[key].shape != expected[key].shape
        and not key.endswith(shape_exempt)
    ]
    return missing, unexpected, wrong_shape


def compact(keys: list[str], limit: int = 8) -> str:
    """A short comma-separated listing of keys."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def named_tensors(tree: object, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts, lists and tuples (a checkpoint, a state dict), with its dotted path."""
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from named_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, list | tuple):
        for index, value in enumerate(tree):
            yield from named_tensors(value, f"{prefix}.{index}" if prefix else str(index))


def non_finite_tensors(tree: object) -> list[str]:
    """Paths of the floating-point tensors in `tree` that hold a NaN or an infinity.

    A diverged run's weights, gradients or optimiser moments are NaN or infinite: such a file must never be
    resumed, exported or scored. A tensor is finite when its minimum and maximum are (`torch.aminmax` propagates
    NaN): one pass without a temporary, ~10x faster than `isfinite().all()` (20 vs 220 ms for a ResNet-18
    pretrainer on one busy CPU thread), and one device sync per device, however many tensors.
    """
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, tensor in named_tensors(tree):
        if tensor.is_floating_point() and tensor.numel():
            by_device.setdefault(tensor.device, []).append((name, tensor.detach()))
    bad = []
    for named in by_device.values():
        finite = torch.stack([torch.stack(torch.aminmax(tensor)).isfinite().all() for _, tensor in named]).tolist()
        bad += [name for (name, _), ok in zip(named, finite, strict=True) if not ok]
    return bad


def refuse_diverged_checkpoint(tensors: object, source: str, what: str = "values", among: str = "tensors") -> None:
    """Raise CheckpointError naming the tensors of `tensors` that hold a NaN or an infinity (`source`: the file, as
    the message should name it): such a file was saved after its run diverged, and nothing may use it."""
    bad = non_finite_tensors(tensors)
    if bad:
        raise CheckpointError(
            f"{source} holds NaN or infinite {what} in {len(bad)} {among} [{compact(bad, 5)}]: it was saved after "
            "its run diverged. Use an earlier checkpoint."
        )
