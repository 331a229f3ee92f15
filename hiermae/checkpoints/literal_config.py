"""A checkpoint's model config, read as data and never executed.

hiermae's checkpoint hook stores the run's `model` config as plain data (a dict of literals) in
`meta['model_cfg']`. Checkpoints written before that, or by a plain mmengine runner, only hold mmengine's config
text in `meta['cfg']`: Python source, which `Config.fromstring` would execute. Here the `model = ...` assignment of
that text is parsed with `ast`, and only literals and `dict(key=literal, ...)` are evaluated; anything else (a
call, a name, an attribute, an f-string) is refused with a `CheckpointError` and nothing runs.
"""

import ast
from collections.abc import Mapping
from typing import Any

from hiermae.checkpoints.keys import CheckpointError

MODEL_CONFIG_KEY = "model_cfg"
LITERALS = (str, int, float, bool, type(None))


def plain_data(value: Any, where: str = "model") -> Any:
    """`value` (a config, ConfigDict, list, ...) as dicts, lists, tuples and literals; TypeError names the key
    of anything else."""
    if isinstance(value, LITERALS):
        return value
    if isinstance(value, Mapping):
        return {str(key): plain_data(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        items = [plain_data(item, f"{where}[{index}]") for index, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(f"config value {where} is a {type(value).__name__}, not plain data: {value!r}")


def literal_value(node: ast.AST, where: str) -> Any:
    """Evaluate a literal expression: constants, negative numbers, lists, tuples, dicts and `dict(k=v, ...)`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, LITERALS):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = literal_value(node.operand, where)
        if isinstance(operand, int | float) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.List | ast.Tuple) and not any(isinstance(e, ast.Starred) for e in node.elts):
        items = [literal_value(element, f"{where}[{i}]") for i, element in enumerate(node.elts)]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and all(key is not None for key in node.keys):
        keys = [literal_value(key, where) for key in node.keys]
        return {key: literal_value(value, f"{where}.{key}") for key, value in zip(keys, node.values, strict=True)}
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
        and not node.args
        and all(keyword.arg is not None for keyword in node.keywords)
    ):
        return {keyword.arg: literal_value(keyword.value, f"{where}.{keyword.arg}") for keyword in node.keywords}
    raise CheckpointError(
        f"{where} (line {getattr(node, 'lineno', '?')}) is not plain data but `{ast.unparse(node)[:80]}`"
    )


def model_config_from_text(text: str, source: str) -> dict | None:
    """The literal `model = ...` of mmengine config text (None if the text assigns no model), without running it."""
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        raise CheckpointError(
            f"{source}: the stored config text does not parse ({error.msg}, line {error.lineno})"
        ) from None
    assignments = [
        statement
        for statement in tree.body
        if isinstance(statement, ast.Assign) and [getattr(t, "id", None) for t in statement.targets] == ["model"]
    ]
    if not assignments:
        return None
    try:
        model = literal_value(assignments[-1].value, "model")
    except CheckpointError as error:
        raise CheckpointError(
            f"{source}: the stored config is refused, it is read as data and never run, and {error}"
        ) from None
    if not isinstance(model, dict):
        raise CheckpointError(f"{source}: the stored model config is a {type(model).__name__}, not a dict")
    return model


def model_config(checkpoint: dict, source: str) -> dict | None:
    """The model config a checkpoint was trained with, as plain data: `meta['model_cfg']`, else parsed from
    `meta['cfg']`; None when it stores neither."""
    meta = checkpoint.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    stored = meta.get(MODEL_CONFIG_KEY)
    if stored is not None:
        if not isinstance(stored, dict):
            raise CheckpointError(f"{source}: meta['{MODEL_CONFIG_KEY}'] is a {type(stored).__name__}, not a dict")
        try:
            return plain_data(stored)
        except TypeError as error:
            raise CheckpointError(f"{source}: {error}") from None
    text = meta.get("cfg")
    return model_config_from_text(text, source) if isinstance(text, str) and text else None
