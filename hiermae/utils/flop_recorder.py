"""Work that custom ops report while FLOPs are being counted.

Ops inside custom autograd Functions or extensions (spconv) trace as opaque nodes whose shapes do not tell the
work done (spconv's work is its number of index pairs), so they call `record_flops` with what they did;
`hiermae.model.flops` collects it inside `recording()`. This module imports nothing of hiermae, so the sparse ops can
report without depending on the counting code (which builds encoders and pretrainers).
"""

import contextlib
import threading
from collections.abc import Iterator

_active = threading.local()


def record_flops(flops: int) -> None:
    """Called by custom ops with the work they did; a no-op unless a `recording()` block is active."""
    counter = getattr(_active, "counter", None)
    if counter is not None:
        counter[0] += int(flops)


@contextlib.contextmanager
def recording() -> Iterator[list[int]]:
    """Collect `record_flops` calls made inside the block into a one-element list."""
    previous = getattr(_active, "counter", None)
    _active.counter = [0]
    try:
        yield _active.counter
    finally:
        _active.counter = previous
