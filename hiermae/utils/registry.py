"""Registries for the swappable parts of masked pretraining, with errors that list the valid names."""

from typing import Any

from mmengine.registry import Registry

MASK_GENERATORS = Registry("mask generator")
ENCODERS = Registry("encoder")
DECODERS = Registry("decoder")
TARGETS = Registry("target")
LOSSES = Registry("loss")


def build_part(registry: Registry, cfg: dict[str, Any] | str, **defaults: Any) -> Any:
    """Build `cfg` (a dict with `type`, or a bare name) from `registry`; an unknown name is a ValueError."""
    cfg = {"type": cfg} if isinstance(cfg, str) else dict(cfg)
    name = cfg.get("type")
    if name not in registry.module_dict:
        valid = ", ".join(sorted(registry.module_dict))
        raise ValueError(f"unknown {registry.name} {name!r}; valid names: {valid}")
    for key, value in defaults.items():
        cfg.setdefault(key, value)
    return registry.build(cfg)
