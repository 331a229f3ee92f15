"""Strict loading with a report: which keys were missing, unexpected or of the wrong shape, and why that is fatal."""

import re
from dataclasses import dataclass, field

import torch

from hiermae.checkpoints import CheckpointError, compact, key_mismatches


@dataclass
class KeyReport:
    """The outcome of loading a state dict into a target model.

    `initialised` are target keys the export does not provide by design (new output norms, buffers the target
    derives from its own config, a classifier head); every other missing key, any unexpected key and any shape
    mismatch makes the load fail. `adapted` says how weights were fitted to the target first (a stem adapted to
    another number of input channels).
    """

    target: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    def lines(self) -> list[str]:
        """Human-readable report, one fact per line."""
        out = [
            f"strict load into {self.target}: {self.loaded} tensors loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.wrong_shape)} of the wrong shape"
        ]
        out += [f"  {line}" for line in self.adapted]
        for title, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("wrong shape", self.wrong_shape),
        ):
            out += [f"  {title}: {key}" for key in keys]
        if self.initialised:
            out.append(
                f"  initialised by the target, not exported ({len(self.initialised)}): {compact(self.initialised)}"
            )
        return out

    def raise_unless_ok(self) -> None:
        if not self.ok:
            raise CheckpointError("\n".join(self.lines()))


def strict_load(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], target: str, initialised: tuple[str, ...] = ()
) -> KeyReport:
    """Load `state_dict` into `model`, allowing only target keys matching an `initialised` regex to be absent.

    Nothing is loaded unless every check passes, so a failed load never leaves a partially loaded model.
    """
    report = KeyReport(target=target)
    absent, report.unexpected, report.wrong_shape = key_mismatches(model.state_dict(), state_dict, "target ")
    for key in absent:
        allowed = any(re.search(pattern, key) for pattern in initialised)
        (report.initialised if allowed else report.missing).append(key)
    report.raise_unless_ok()
    result = model.load_state_dict(state_dict, strict=False)
    if result.unexpected_keys or set(result.missing_keys) != set(report.initialised):
        raise CheckpointError(f"{target}: load_state_dict disagreed with the key check: {result}")
    report.loaded = len(state_dict)
    return report
