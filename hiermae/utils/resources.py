"""Peak resident memory of one step on CPU, for benchmarks and comparisons.

The peak (VmHWM) is reset through /proc/self/clear_refs right before the step; `ru_maxrss` cannot be used
because Linux carries it over from the parent across fork and exec. Call it in a fresh process after a warm-up
step, so the figure is the step's activations, gradients and workspace, not weights or library code.
"""

from collections.abc import Callable


def status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def step_peak_rss_bytes(step: Callable[[], object]) -> int:
    """How far running `step()` raises the peak resident set above the resident set before it."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = status_bytes("VmRSS")
    step()
    return status_bytes("VmHWM") - before
