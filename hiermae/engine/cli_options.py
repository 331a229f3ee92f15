"""Command-line options checked before any work starts, with a message that names the option.

`number(...)` builds an argparse `type=` that raises `argparse.ArgumentTypeError`; argparse then stops with
`error: argument --images: must be an integer >= 1, got '-3'` (exit 2; `ToolParser` prints just that line). The
tools share the few kinds below instead of each checking its own: numbers, files to read (`existing_file`), folders
and files to write (`folder_to_write`, `file_to_write`), and `--cfg-options` (`ConfigOptions`).
"""

import argparse
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn


class ToolParser(argparse.ArgumentParser):
    """The tools' argument parser: an error is one line, `prog: error: message (--help lists the options)`, exit
    status 2; argparse's own prints the usage block first, above the line that names the problem."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


SEED_LIMIT = 2**32  # numpy (which mmengine and the data pipeline seed too) takes seeds below 2**32


def number(
    kind: type[int] | type[float],
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive: bool = False,
    multiple_of: int | None = None,
) -> Callable[[str], int | float]:
    """An argparse type accepting a finite `kind` in [minimum, maximum] ((minimum, maximum) when `exclusive`)."""
    low, high = ("(", ")") if exclusive else ("[", "]")
    bounds = f"{low}{'-inf' if minimum is None else minimum}, {'inf' if maximum is None else maximum}{high}"
    wanted = f"{'an integer' if kind is int else 'a number'} in {bounds}"
    if multiple_of:
        wanted += f", a multiple of {multiple_of}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        inside = (minimum is None or (value > minimum if exclusive else value >= minimum)) and (
            maximum is None or (value < maximum if exclusive else value <= maximum)
        )
        if not math.isfinite(value) or not inside or (multiple_of and value % multiple_of):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


positive_int = number(int, minimum=1)
random_seed = number(int, minimum=0, maximum=SEED_LIMIT - 1)
ratio = number(float, minimum=0.0, maximum=1.0, exclusive=True)  # a mask ratio: some units masked, some visible
image_size = number(int, minimum=32, multiple_of=32)  # hiermae's 32-px mask unit


QUOTES = ("'", '"')
CLOSING = {"[": "]", "(": ")"}


def split_items(text: str) -> list[str]:
    """`text` cut at its commas outside brackets and quotes (a quote opens where an item starts); a trailing comma
    ends the list. `ValueError` names an unbalanced bracket or quote."""
    items, expected, quote, start, previous = [], [], None, 0, ","
    for position, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in QUOTES and previous in "[(,":
            quote = char
        elif char in CLOSING:
            expected.append(CLOSING[char])
        elif char in CLOSING.values() and (not expected or expected.pop() != char):
            raise ValueError(f"{char!r} at position {position + 1} of {text!r} closes nothing")
        elif char == "," and not expected:
            items.append(text[start:position])
            start = position + 1
        previous = previous if char.isspace() else char
    if quote or expected:
        raise ValueError(f"{quote or expected[-1]!r} is missing in {text!r}")
    items.append(text[start:])
    return items[:-1] if len(items) > 1 and not items[-1].strip() else items


def scalar(text: str) -> Any:
    """An int, a float, a bool (`true` / `false`, any case), None (`None`) or the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return None if text == "None" else text


def option_value(text: str) -> Any:
    """A `--cfg-options` value: comma-separated items make a list, `[...]` a list and `(...)` a tuple (nested as
    deep as wanted), a quoted item is that text exactly, anything else a number, bool, None or the text as written,
    spaces inside included (only spaces around an item are dropped)."""
    text = text.strip()
    items = split_items(text)
    if len(items) > 1 or (items and text.endswith(",")):
        return [option_value(item) for item in items]
    if len(text) >= 2 and text[0] in QUOTES and text[-1] == text[0]:
        return text[1:-1]
    if text[:1] in CLOSING and text[-1:] == CLOSING[text[0]]:
        inner = text[1:-1]
        values = [option_value(item) for item in split_items(inner)] if inner.strip() else []
        return tuple(values) if text[0] == "(" else values
    return scalar(text)


class ConfigOptions(argparse.Action):
    """`--cfg-options KEY=VALUE ...` into {KEY: value}, read as mmengine's `DictAction` reads them (see
    `option_value`) except that a value keeps its spaces: `DictAction` deletes every space, so
    `root=/data/my photos` would become `/data/myphotos`. A malformed option stops argparse with its name."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Sequence[str],
        option_string: str | None = None,
    ) -> None:
        options = dict(getattr(namespace, self.dest, None) or {})
        for option in values:
            key, equals, text = option.partition("=")
            key = key.strip()
            if not equals or not key or "" in key.split("."):
                raise argparse.ArgumentError(self, f"{option!r} is not KEY=VALUE (a dotted config key, '=', a value)")
            try:
                options[key] = option_value(text)
            except ValueError as error:
                raise argparse.ArgumentError(
                    self, f"{key}: {error}; quote the value to take it as written: {key}='...'"
                ) from None
        setattr(namespace, self.dest, options)


def existing_file(text: str) -> str:
    """An argparse type for a file to read (a config, a checkpoint): it must exist and be a file."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is {'a folder' if path.is_dir() else 'not a regular file'}")
    return text


def folder_to_write(text: str) -> str:
    """An argparse type for a folder to write into (a work dir, `--out`): an existing folder, or a path no file
    stands in the way of (the path itself, or a folder it would be created in)."""
    path = Path(text).expanduser()
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is no folder")
    for part in (path, *path.parents):
        if os.path.lexists(part) and not part.is_dir():
            where = "" if part == path else f" (a folder of {text!r})"
            kind = "a file" if part.exists() else "a broken link"
            raise argparse.ArgumentTypeError(f"{str(part)!r}{where} is {kind}, not a folder")
    return text


def file_to_write(text: str) -> str:
    """An argparse type for a file to write (`--json`, a PNG): not a folder, and not inside a file."""
    path = Path(text).expanduser()
    if not text.strip() or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
    folder_to_write(str(path.parent))
    return text
