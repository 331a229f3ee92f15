"""Read a checkpoint file someone else may have written, as data: no code in it can run.

A `.pth` file is a pickle, and unpickling can call any function the file names. Every checkpoint a user points at
(export, evaluate, visualize, `--resume`, `load_from`, a downstream `init_cfg.checkpoint`) is read with
`torch.load(weights_only=True)`, whose unpickler builds only tensors, containers and plain values, plus the few
types an mmengine runner stores in its own checkpoints (measured on checkpoints written by `tools/train.py`,
pretraining with and without `--amp` and Mask R-CNN): the logged-scalar `HistoryBuffer`, which holds numpy arrays
and scalars of numeric dtypes and refers to its statistics methods through `getattr`. That `getattr` is replaced by
one that returns only those methods. A file that needs anything else is refused with `UnsafeCheckpointError`;
`trust=True` (the tools' `--trust-checkpoint`) unpickles it fully, with a warning, for files of a trusted origin.

`.safetensors` files hold only tensors and string metadata and are read without pickle at all.
"""

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file as load_safetensors

from hiermae.checkpoints.keys import CheckpointError

TRUST_OPTION = "--trust-checkpoint"
HISTORY_STATISTICS = ("min", "max", "current", "mean")  # the methods a pickled HistoryBuffer refers to
NUMERIC_DTYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                  np.float16, np.float32, np.float64)  # fmt: skip


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that only full unpickling could read (so it could run code), and that was not trusted."""


class TrustedCheckpointWarning(UserWarning):
    """A checkpoint is being fully unpickled because the user said its origin is trusted."""


def history_statistic(owner: object, name: str) -> object:
    """`getattr` as a checkpoint may use it: only `HistoryBuffer`'s statistics methods, nothing else."""
    if owner is HistoryBuffer and name in HISTORY_STATISTICS:
        return getattr(owner, name)
    raise pickle.UnpicklingError(f"getattr({owner!r}, {name!r}) is not allowed in a checkpoint")


def runner_globals() -> list[Any]:
    """What `weights_only=True` may build beyond tensors and plain values: the types mmengine's runner stores."""
    multiarray = np._core.multiarray
    return [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        *(type(np.dtype(kind)) for kind in NUMERIC_DTYPES),  # object arrays stay refused
        *((multiarray._reconstruct, f"{module}.multiarray._reconstruct") for module in ("numpy._core", "numpy.core")),
        *((multiarray.scalar, f"{module}.multiarray.scalar") for module in ("numpy._core", "numpy.core")),
        (history_statistic, "builtins.getattr"),
    ]


def load_checkpoint_file(
    path: str | Path, *, trust: bool = False, map_location: str | torch.device | Any = "cpu"
) -> dict:
    """The dict stored in a checkpoint file (`.pth` or `.safetensors`), read as data unless `trust` is set.

    Raises FileNotFoundError for a missing file, `UnsafeCheckpointError` for a pickle that needs more than data,
    and `CheckpointError` (naming the file) for anything else unreadable.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    content = read_safetensors(path) if path.suffix == ".safetensors" else read_pickle(path, trust, map_location)
    if not isinstance(content, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(content).__name__}, not a dict of weights")
    return content


def read_pickle(path: Path, trust: bool, map_location: Any) -> object:
    """torch.load with weights_only=True and the runner's types, or fully when `trust` is set."""
    try:
        if trust:
            warnings.warn(
                f"{TRUST_OPTION}: unpickling {path} in full; any code it holds runs now", TrustedCheckpointWarning,
                stacklevel=3,
            )  # fmt: skip
            return torch.load(path, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(runner_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if trust:
            raise CheckpointError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from error
        reason = refusal_reason(str(error))
        raise UnsafeCheckpointError(
            f"checkpoint {path} is refused: it holds more than tensors and plain data ({reason}), and unpickling it "
            f"could run code. Nothing from it was run. If you trust its origin, pass {TRUST_OPTION} to load it in "
            "full; better, re-export it from a trusted machine (tools/export.py writes plain files)."
        ) from None
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways; all mean "cannot read"
        raise CheckpointError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from error


def refusal_reason(message: str) -> str:
    """What torch's weights-only unpickler refused, cut out of its long error message."""
    reason = message.split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
    reason = reason.split(" Please use `torch.serialization.add_safe_globals")[0]
    return " ".join(reason.split()) or "not a weights-only pickle"


def read_safetensors(path: Path) -> dict:
    """{'state_dict': tensors, 'meta': metadata} of a `.safetensors` file; metadata values are JSON when they parse."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state_dict = load_safetensors(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from error
    return {"state_dict": state_dict, "meta": {key: from_metadata(value) for key, value in metadata.items()}}


def from_metadata(value: str) -> object:
    """A safetensors metadata string decoded from JSON, or the string itself (e.g. timm's `format: pt`)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
