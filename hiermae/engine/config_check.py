"""Name unknown config keys, with close matches, and counts out of range, before mmengine ignores them or fails
vaguely.

mmengine passes each config dict to the constructor its `type` names, so a misspelt key either raises a bare
`TypeError: ... unexpected keyword argument` once that part is built (model, loop, optimiser, dataset), or is
silently ignored: unknown top-level keys (`trian_dataloader`) and keys under constructors taking `**kwargs`.

Checked here, before the runner starts:
- every `--cfg-options` key must start with a key of the config or a key the runner reads (`sync_bn`, ...);
- every dict whose constructor can be found (its `type` in the registry for its place in the config, or a
  DataLoader) may only hold that constructor's arguments. Constructors taking `**kwargs` cannot be judged and are
  skipped, as are dicts whose type no registry here knows (e.g. mmdet parts without their default scope);
- the counts in `LEAST_COUNTS` (batch sizes, iterations, epochs, ...) must be integers at least that large;
- a `--cfg-options` value must not turn a text setting into a list (a comma in a path separates list items).
Top-level keys of config files are not checked: configs use them as variables (`image_size = 64`).
"""

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from mmengine.config import Config
from mmengine.registry import (
    DATA_SAMPLERS,
    DATASETS,
    FUNCTIONS,
    HOOKS,
    LOG_PROCESSORS,
    LOOPS,
    MODELS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    PARAM_SCHEDULERS,
    VISBACKENDS,
    VISUALIZERS,
    WEIGHT_INITIALIZERS,
    Registry,
)
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from hiermae.utils import DECODERS, LOSSES, MASK_GENERATORS, TARGETS

# Top-level keys the runner reads besides its constructor's arguments (Runner.from_cfg, wrap_model, train).
RUNNER_EXTRA_KEYS = frozenset(
    {"sync_bn", "find_unused_parameters", "model_wrapper_cfg", "custom_imports", "compile",
     "activation_checkpointing", "efficient_conv_bn_eval", "launcher"}
)  # fmt: skip
# Where a dict sits (one glob per path component; list positions count as components) -> its type's registry.
REGISTRY_BY_PLACE: list[tuple[tuple[str, ...], Registry]] = [
    (("model", "decoder"), DECODERS),
    (("model", "mask"), MASK_GENERATORS),
    (("model", "target"), TARGETS),
    (("model", "loss"), LOSSES),
    (("model",), MODELS),
    (("model", "*"), MODELS),
    (("*_cfg",), LOOPS),
    (("optim_wrapper",), OPTIM_WRAPPERS),
    (("optim_wrapper", "optimizer"), OPTIMIZERS),
    (("param_scheduler",), PARAM_SCHEDULERS),
    (("param_scheduler", "*"), PARAM_SCHEDULERS),
    (("default_hooks", "*"), HOOKS),
    (("custom_hooks", "*"), HOOKS),
    (("*_dataloader", "dataset"), DATASETS),
    (("*_dataloader", "sampler"), DATA_SAMPLERS),
    (("*_dataloader", "collate_fn"), FUNCTIONS),
    (("visualizer",), VISUALIZERS),
    (("visualizer", "vis_backends", "*"), VISBACKENDS),
    (("log_processor",), LOG_PROCESSORS),
]
# Keys a builder consumes before calling the constructor.
BUILDER_KEYS: dict[tuple[str, ...], frozenset[str]] = {
    ("optim_wrapper",): frozenset({"type", "optimizer", "paramwise_cfg", "constructor"}),
}


# Counts a run needs at least this many of: (place, key, least). A batch size of 0 divided by zero in the samplers
# and -1 failed as a negative length; `max_iters=0` ended a run at once, saving nothing, with exit status 0.
LEAST_COUNTS: tuple[tuple[tuple[str, ...], str, int], ...] = (
    (("*_dataloader",), "batch_size", 1),
    (("*_dataloader",), "num_workers", 0),
    (("*_dataloader", "batch_sampler"), "batch_size", 1),
    (("train_cfg",), "max_iters", 1),
    (("train_cfg",), "max_epochs", 1),
    (("train_cfg",), "val_interval", 1),
)


class ConfigValueError(ValueError):
    """A config value out of its range (a batch size of 0, ...) or of the wrong kind, named by its key."""


class UnknownConfigKeyError(KeyError):
    """A config key that nothing reads or that its constructor does not accept."""

    def __str__(self) -> str:  # KeyError would print the message quoted and escaped
        return str(self.args[0])


def close_matches(word: str, candidates: Iterable[str]) -> str:
    """A ' did you mean ...?' suffix for the candidates close to `word`, or ''."""
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=3, cutoff=0.75)
    return f"; did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""


def runner_keys() -> frozenset[str]:
    """Top-level keys an mmengine runner reads."""
    return frozenset(inspect.signature(Runner.__init__).parameters) - {"self"} | RUNNER_EXTRA_KEYS


def matches_place(path: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    return len(path) == len(pattern) and all(fnmatchcase(part, glob) for part, glob in zip(path, pattern))


def constructor_of(node: Mapping[str, Any], path: tuple[str, ...]) -> Callable | None:
    """The class or function the dict at `path` is passed to, when it can be told; None otherwise."""
    kind = node.get("type")
    if callable(kind):
        return kind
    if kind is None:
        return DataLoader if matches_place(path, ("*_dataloader",)) else None
    if path[-1] == "init_cfg":  # a weight initialiser, at any depth (mmengine's BaseModule)
        return WEIGHT_INITIALIZERS.get(kind) if isinstance(kind, str) else None
    for pattern, registry in REGISTRY_BY_PLACE:
        if matches_place(path, pattern):
            return registry.get(kind) if isinstance(kind, str) else None
    return None


def accepted_keys(node: Mapping[str, Any], path: tuple[str, ...]) -> tuple[str, frozenset[str]] | None:
    """The constructor's name and the keys it accepts, or None when it is unknown or takes `**kwargs`."""
    target = constructor_of(node, path)
    if target is None:
        return None
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    names = {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    extra = BUILDER_KEYS.get(path, frozenset({"type"}))
    return getattr(target, "__name__", str(target)), frozenset(names | extra)


def check_dict(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
    """Raise UnknownConfigKeyError for a key of the dict at `path` its constructor does not take."""
    accepted = accepted_keys(node, path)
    if accepted is None:
        return
    name, keys = accepted
    for key in node:
        if key not in keys:
            dotted = ".".join((*path, key))
            raise UnknownConfigKeyError(
                f"unknown config key {dotted!r}: {name} does not take {key!r}{close_matches(key, keys)} "
                f"(it takes: {', '.join(sorted(keys - {'type'}))})"
            )


def check_counts(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
    """Raise ConfigValueError for a count of the dict at `path` (`LEAST_COUNTS`) that is not an integer or too small."""
    for pattern, key, least in LEAST_COUNTS:
        if key in node and matches_place(path, pattern):
            value = node[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigValueError(f"{'.'.join((*path, key))} must be an integer >= {least}, got {value!r}")


def walk(node: Any, path: tuple[str, ...]) -> None:
    """Check every dict below `node` (depth first, so the outermost error in a branch comes last)."""
    if isinstance(node, Mapping):
        if path:
            check_dict(node, path)
            check_counts(node, path)
        for key, value in node.items():
            walk(value, (*path, str(key)))
    elif isinstance(node, list | tuple):
        for index, value in enumerate(node):
            walk(value, (*path, str(index)))


def config_value(cfg: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted key of `cfg` (list positions are numbers), or None when there is none."""
    node: Any = cfg
    for part in dotted.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list | tuple) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def check_option_keys(cfg: Config, options: Mapping[str, Any]) -> None:
    """Every `--cfg-options` key must start with a key of `cfg` or one the runner reads, and a value must not turn
    a text setting of `cfg` into a list (`root=/data/a,b` reads as the list ['/data/a', 'b'])."""
    known, plain = set(cfg.keys()) | runner_keys(), cfg.to_dict()
    for option, value in options.items():
        head = option.split(".")[0]
        if head not in known:
            raise UnknownConfigKeyError(
                f"unknown config key {option!r}: {head!r} is neither in the config nor read by the runner"
                f"{close_matches(head, known)}"
            )
        current = config_value(plain, option)
        if isinstance(current, str) and isinstance(value, list | tuple):
            raise ConfigValueError(
                f"--cfg-options {option}: the config holds text ({current!r}) but the value reads as the list "
                f"{value!r} (a comma separates list items); quote it to keep it as text: {option}=\"...\""
            )


def check_config_keys(cfg: Config) -> None:
    """Raise UnknownConfigKeyError for a key no constructor of `cfg` accepts (see the module's docstring)."""
    walk(cfg.to_dict(), ())
