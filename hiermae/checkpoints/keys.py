"""Comparing a checkpoint's keys with a model's, and the error every checkpoint check raises.

Core code (resume and `load_from` checks) and the export and transfer code in `downstream/` share these, so they
live in the core: dependencies go one way, core → downstream → tools.
"""

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
