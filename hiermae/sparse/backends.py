"""Which backend each stride-1 spatial conv uses, from measurements (benchmarks/sparse_backends.py), not guesses.

The table is keyed by (device type, kind, kernel, sites per unit side); channel counts barely changed the ranking
in the measurements, so they are not part of the key. Entries are refreshed by running the benchmark script and
copying its "choice" lines here; BENCHMARKS.md keeps the timings behind them.
"""

from typing import Protocol

CONV_BACKENDS = ("tile", "gather", "spconv", "dense")
DEPTHWISE_BACKENDS = ("tile", "gather", "dense")


class BackendChoice(Protocol):
    def __call__(self, kind: str, kernel: int, per_unit: int, channels: int, device: str) -> str: ...


# (device, kind, kernel, per_unit) -> fastest forward+backward backend, measured at 75 % masking, batch 8, 224 px
# (ResNet-50 3x3 and ConvNeXt-T depthwise shapes) on the 2-core x86_64 CPU and on an H100 (spconv not installed
# there; every CUDA entry was within ~0.5 ms of the others, launch-bound at this batch); see BENCHMARKS.md.
MEASURED: dict[tuple[str, str, int, int], str] = {
    ("cpu", "conv", 3, 8): "tile",
    ("cpu", "conv", 3, 4): "gather",
    ("cpu", "conv", 3, 2): "gather",
    ("cpu", "conv", 3, 1): "gather",
    ("cpu", "depthwise", 7, 8): "tile",
    ("cpu", "depthwise", 7, 4): "dense",
    ("cpu", "depthwise", 7, 2): "dense",
    ("cpu", "depthwise", 7, 1): "dense",
    ("cuda", "conv", 3, 8): "gather",
    ("cuda", "conv", 3, 4): "dense",
    ("cuda", "conv", 3, 2): "gather",
    ("cuda", "conv", 3, 1): "gather",
    ("cuda", "depthwise", 7, 8): "tile",
    ("cuda", "depthwise", 7, 4): "tile",
    ("cuda", "depthwise", 7, 2): "tile",
    ("cuda", "depthwise", 7, 1): "dense",
}


def measured_backend(kind: str, kernel: int, per_unit: int, channels: int, device: str) -> str:
    """The measured fastest backend for this layer; `tile` where nothing was measured (another device type or
    kernel): it handles every shape and was never the slowest here."""
    return MEASURED.get((device, kind, kernel, per_unit), "tile")


def fixed_backend(name: str) -> BackendChoice:
    """A choice that always names `name` (tests use it to run every layer on one backend)."""

    def choose(kind: str, kernel: int, per_unit: int, channels: int, device: str) -> str:
        return name

    return choose
