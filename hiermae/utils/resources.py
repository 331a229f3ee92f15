"""Peak resident memory of one step on CPU, for benchmarks and comparisons.

The peak (VmHWM) is reset through /proc/self/clear_refs right before the step; `ru_maxrss` cannot be used
because Linux carries it over from the parent across fork and exec. Call it in a fresh process after a warm-up
step, so the figure is the step's activations, gradients and workspace, not weights or library code. Before the
step, the C heap returns its free memory to the system (glibc's `malloc_trim`): otherwise memory the warm-up
freed stays resident, a step no larger than the warm-up raises the peak by nothing, and the figure depends on
the warm-up's size more than on the step's.
"""

import ctypes
import ctypes.util
from collections.abc import Callable


def status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def release_free_heap() -> None:
    """Hand the C heap's free memory back to the system, where the C library can (glibc); elsewhere nothing."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def step_peak_rss_bytes(step: Callable[[], object]) -> int:
    """How far running `step()` raises the peak resident set above the resident set before it."""
    release_free_heap()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = status_bytes("VmRSS")
    step()
    return status_bytes("VmHWM") - before
