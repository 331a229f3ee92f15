"""Masks and sparse plans drawn where the batch is assembled: in the data-loader workers under `tools/train.py`.

`MaskPlanner` draws a batch's mask on the CPU from per-sample seeds and builds the encoder's plan for it; the
pretrainer then sends mask and plan to the device in one non-blocking copy, so the training step neither plans
nor waits for the host. `MaskCollate` runs it in the workers, for batches whose samples carry the training
iteration (`hiermae.data.sampling`): the seeds are those `MaskedPretrainer` would draw itself, so a batch gets the
same mask wherever it is drawn, and a resumed run draws the masks of the uninterrupted one.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from mmengine.dataset import pseudo_collate

from hiermae.backbones import Planner
from hiermae.masking import MaskGenerator, check_every_sample_sees
from hiermae.utils import mix_seed

CALIBRATION_BATCHES = 16  # example masks a planner's static budgets are measured on (see SwinPlanner.calibrated)


@dataclass(frozen=True)
class MaskedBatch:
    """One batch's mask (B×h×w bool) and the encoder's plan for it (empty for the dense reference)."""

    visible: torch.Tensor
    plan: Any = None


@dataclass
class MaskPlanner:
    """Draws masks from per-sample seeds and plans the sparse encoder for them, on the host.

    `planner` is the encoder's (`MaskedEncoder.planner(device_type)`). It is calibrated once per batch size and
    grid on masks of the same generator (fixed seeds, so every worker and process gets the same budgets and hence
    the same shapes).
    """

    generator: MaskGenerator
    unit: int
    planner: Planner
    calibrated: dict[tuple[int, tuple[int, int]], Any] = field(default_factory=dict)

    def draw(self, batch_size: int, grid: tuple[int, int], seeds: torch.Tensor | None) -> MaskedBatch:
        """The mask of a batch (seeded per sample, or from the global RNG) and its plan."""
        return self.plan(self.generator(batch_size, grid, seeds))

    def plan(self, visible: torch.Tensor) -> MaskedBatch:
        """`visible` (on the CPU) with its plan."""
        check_every_sample_sees(visible)
        key = (visible.shape[0], tuple(visible.shape[1:]))
        if key not in self.calibrated:
            examples = [
                self.generator(key[0], key[1], torch.arange(key[0]) + 10**9 + k * key[0])
                for k in range(CALIBRATION_BATCHES)
            ]
            self.calibrated[key] = self.planner.calibrated(examples)
        return MaskedBatch(visible, self.calibrated[key](visible))


def iteration_seeds(base_seed: int, iterations: Sequence[int], indices: Sequence[int]) -> torch.Tensor:
    """One mask seed per sample from (base seed, training iteration, dataset index), as `batch_seeds` draws."""
    return torch.tensor([mix_seed(base_seed, it, index) for it, index in zip(iterations, indices, strict=True)])


@dataclass
class MaskCollate:
    """mmengine's `pseudo_collate`, plus `data_samples['masked']`: the batch's `MaskedBatch`, drawn here.

    Samples must carry `data_samples['index']` and `['iteration']` (`hiermae.data.sampling.IterationBatchSampler`
    tags them); batches without an iteration pass through unchanged and the model draws their mask itself.
    """

    planner: MaskPlanner
    mask_seed: int
    input_size: int

    def __call__(self, samples: list[dict]) -> dict:
        batch = pseudo_collate(samples)
        data_samples = batch.get("data_samples")
        if not isinstance(data_samples, dict) or "iteration" not in data_samples or "index" not in data_samples:
            return batch
        seeds = iteration_seeds(self.mask_seed, data_samples["iteration"], data_samples["index"])
        side = self.input_size // self.planner.unit
        data_samples["masked"] = self.planner.draw(len(seeds), (side, side), seeds)
        return batch
