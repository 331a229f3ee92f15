"""Numeric command-line options checked for type and range, with a message that names the option.

`number(...)` builds an argparse `type=` that raises `argparse.ArgumentTypeError`; argparse then stops with
`error: argument --images: must be an integer >= 1, got '-3'`, before any work starts. The tools share the few
kinds below instead of each checking its own.
"""

import argparse
import math
from collections.abc import Callable

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
