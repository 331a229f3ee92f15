"""The shared body of CNN adapters: one walk of timm's modules on an engine serves the sparse path, the dense
reference, and the discovery of which site tables the sparse path reads (so the host can build them ahead)."""

from abc import abstractmethod
from dataclasses import dataclass

import torch

from hiermae.backbones.base import MaskedEncoder
from hiermae.sparse import (
    BackendChoice,
    Engine,
    MaskedDenseEngine,
    SitePlan,
    SparseEngine,
    TableKey,
    build_site_plan,
    measured_backend,
)


@dataclass(frozen=True)
class SitePlanner:
    """Builds a CNN's `SitePlan` on the host: the visible units and the tables named in `manifest`."""

    unit: int
    manifest: frozenset[TableKey]

    def __call__(self, visible: torch.Tensor) -> SitePlan:
        return build_site_plan(visible, self.unit, self.manifest)

    def calibrated(self, examples: list[torch.Tensor]) -> "SitePlanner":
        """Itself: every table's shape follows from the number of visible units alone."""
        return self


def backend_for(device_type: str) -> BackendChoice:
    """The measured backend choice of a step on `device_type`, whatever device the call itself runs on."""

    def choose(kind: str, kernel: int, per_unit: int, channels: int, device: str) -> str:
        return measured_backend(kind, kernel, per_unit, channels, device_type)

    return choose


class SiteEncoder(MaskedEncoder):
    """A CNN adapter: subclasses implement `walk(engine, images)` with engine ops only."""

    @abstractmethod
    def walk(self, engine: Engine, images: torch.Tensor) -> list[torch.Tensor]:
        """The stage maps, computed by `engine` on timm's modules as timm's forward would."""

    def encode(self, images: torch.Tensor, visible: torch.Tensor, plan: SitePlan | None) -> list[torch.Tensor]:
        if self.sparse:
            return self.walk(SparseEngine(visible, self.mask_unit, plan=plan), images)
        return self.walk(MaskedDenseEngine(visible, self.mask_unit), images)

    def sparse_planner(self, device_type: str) -> SitePlanner:
        return SitePlanner(self.mask_unit, self.table_manifest(device_type))

    def table_manifest(self, device_type: str) -> frozenset[TableKey]:
        """The site tables the sparse walk reads on `device_type`: recorded once, outside any training step, by
        walking a one-unit image (eval mode, no gradients) with that device type's backend choices; cached."""
        manifests = self.__dict__.setdefault("_table_manifests", {})
        if device_type not in manifests:
            weight = next(self.parameters())
            images = weight.new_zeros(1, self.in_chans, self.mask_unit, self.mask_unit)
            visible = torch.ones(1, 1, 1, dtype=torch.bool, device=weight.device)
            engine = SparseEngine(visible, self.mask_unit, choose=backend_for(device_type))
            was_training = self.training
            with torch.no_grad():
                self.eval()
                self.walk(engine, images)
                self.train(was_training)
            manifests[device_type] = frozenset(engine.sites.table_keys())
        return manifests[device_type]
