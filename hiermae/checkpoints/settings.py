"""The model and data settings a run was trained with, stored in its checkpoints, and the check that a resume keeps
them.

A resume continues the saved weights, optimiser state and data position. Under another image size, mask ratio,
backbone or data set the weights may still fit, and the run would go on as if nothing had changed, one curve then
mixing two experiments. `changed_settings` names every setting that differs; `--resume-anyway` overrides.
"""

from typing import Any

from hiermae.checkpoints.literal_config import model_config, plain_data

SETTINGS_KEY = "run_settings"  # in a checkpoint's meta: the flattened settings below
RUNTIME_ONLY = ("model.compile", "train_dataloader.dataset.file_list")  # how a run computes, not what it learns
MISSING = "(not set)"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {dotted key: value}; tuples become lists (a config file and a checkpoint may differ)."""
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: as_lists(tree)}


def as_lists(value: Any) -> Any:
    """`value` with every tuple, at any depth, turned into a list."""
    if isinstance(value, list | tuple):
        return [as_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: as_lists(item) for key, item in value.items()}
    return value


def without_runtime_keys(flat: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in flat.items() if key not in RUNTIME_ONLY}


def run_settings(cfg: Any) -> dict[str, Any]:
    """The settings of a run's config that a resume must keep: the model, and the training data set and batch size.

    Raises TypeError (naming the key) when the config holds something other than plain data.
    """
    loader = cfg.get("train_dataloader") or {}
    tree = {
        "model": cfg.get("model") or {},
        "train_dataloader": {"dataset": loader.get("dataset") or {}, "batch_size": loader.get("batch_size")},
    }
    return without_runtime_keys(flatten(plain_data(tree, "cfg")))


def stored_settings(checkpoint: dict, source: str) -> dict[str, Any] | None:
    """The settings a checkpoint records: `meta['run_settings']`, else its model config alone (older files), else
    None."""
    meta = checkpoint.get("meta") if isinstance(checkpoint.get("meta"), dict) else {}
    stored = meta.get(SETTINGS_KEY)
    if isinstance(stored, dict):
        return stored
    model = model_config(checkpoint, source)
    return None if model is None else without_runtime_keys(flatten({"model": model}))


def changed_settings(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: stored → current' for every setting that differs, among the sections (`model`, `train_dataloader`)
    the checkpoint records."""
    sections = {key.split(".")[0] for key in stored}
    keys = sorted(key for key in stored.keys() | current.keys() if key.split(".")[0] in sections)
    return [
        f"{key}: {stored.get(key, MISSING)!r} → {current.get(key, MISSING)!r}"
        for key in keys
        if stored.get(key, MISSING) != current.get(key, MISSING)
    ]
