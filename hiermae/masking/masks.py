"""Mask generators (which units stay visible) and the mask pyramid (the same mask at every stage stride).

Every generator returns `visible`: a B×h×w bool tensor, True where a mask unit is kept. Each sample's mask is
drawn from its own seed when seeds are given, so a sample's mask does not depend on its batch-mates or on the
number of processes.
"""

import math

import torch

from hiermae.utils import MASK_GENERATORS


def check_mask_ratio(mask_ratio: float) -> float:
    """Return `mask_ratio` as a float, or raise if it is not strictly between 0 and 1."""
    if not 0.0 < float(mask_ratio) < 1.0:
        raise ValueError(f"mask ratio must be in the open interval (0, 1), got {mask_ratio}")
    return float(mask_ratio)


def check_divisible(size: tuple[int, ...] | torch.Size, unit: int) -> None:
    """Raise if an image size is not a multiple of the mask unit."""
    height, width = int(size[0]), int(size[1])
    if height % unit or width % unit or height == 0 or width == 0:
        raise ValueError(
            f"image size {height}x{width} is not divisible by the mask unit {unit} px; "
            f"use a multiple of {unit} (e.g. {max(unit, height // unit * unit)})"
        )



def sample_generators(batch_size: int, seeds: torch.Tensor | None) -> list[torch.Generator | None]:
    """One torch.Generator per sample seeded from `seeds`, or the global RNG (None) when no seeds are given."""
    if seeds is None:
        return [None] * batch_size
    if len(seeds) != batch_size:
        raise ValueError(f"got {len(seeds)} mask seeds for a batch of {batch_size}")
    generators = []
    for seed in seeds.tolist():
        generator = torch.Generator()
        generator.manual_seed(int(seed))
        generators.append(generator)
    return generators


class MaskGenerator:
    """Base class: `generator(batch_size, (h, w), seeds)` returns the B×h×w visible map."""

    def __init__(self, mask_ratio: float = 0.75) -> None:
        self.mask_ratio = check_mask_ratio(mask_ratio)

    def num_visible(self, num_units: int) -> int:
        """Units kept per sample: the masked count is rounded, and at least one unit stays visible."""
        return max(1, num_units - int(round(num_units * self.mask_ratio)))

    def __call__(
        self, batch_size: int, grid: tuple[int, int], seeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        masks = [self.sample(grid, generator) for generator in sample_generators(batch_size, seeds)]
        return torch.stack(masks)

    def sample(self, grid: tuple[int, int], generator: torch.Generator | None) -> torch.Tensor:
        """Return one h×w visible map."""
        raise NotImplementedError


@MASK_GENERATORS.register_module(name="random")
class RandomMask(MaskGenerator):
    """Uniformly random units, with exactly the same number kept in every sample (MAE)."""

    def sample(self, grid: tuple[int, int], generator: torch.Generator | None) -> torch.Tensor:
        num_units = grid[0] * grid[1]
        order = torch.randperm(num_units, generator=generator)
        visible = torch.zeros(num_units, dtype=torch.bool)
        visible[order[: self.num_visible(num_units)]] = True
        return visible.view(grid)


@MASK_GENERATORS.register_module(name="blockwise")
class BlockwiseMask(MaskGenerator):
    """BEiT's block-wise masking: mask random rectangles of 4+ units until the masked count is reached.

    Block area and aspect ratio are drawn as in BEiT (Bao et al., 2022: area ≥ 4 units, aspect in [0.3, 1/0.3]);
    the count is then made exact by masking or unmasking random units, so every sample keeps the same number.
    """

    def __init__(self, mask_ratio: float = 0.75, min_block: int = 4, max_aspect: float = 1 / 0.3) -> None:
        super().__init__(mask_ratio)
        self.min_block = min_block
        self.log_aspect = math.log(max_aspect)

    def sample(self, grid: tuple[int, int], generator: torch.Generator | None) -> torch.Tensor:
        height, width = grid
        target = height * width - self.num_visible(height * width)
        masked = torch.zeros(grid, dtype=torch.bool)
        for _ in range(100):
            missing = target - int(masked.sum())
            if missing <= 0:
                break
            area = self.min_block + float(torch.rand((), generator=generator)) * max(missing - self.min_block, 0)
            aspect = math.exp((2 * float(torch.rand((), generator=generator)) - 1) * self.log_aspect)
            block_h = max(1, min(height, round(math.sqrt(area * aspect))))
            block_w = max(1, min(width, round(math.sqrt(area / aspect))))
            top = int(torch.randint(0, height - block_h + 1, (), generator=generator))
            left = int(torch.randint(0, width - block_w + 1, (), generator=generator))
            masked[top : top + block_h, left : left + block_w] = True
        return ~exact_count(masked.flatten(), target, generator).view(grid)


def exact_count(chosen: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """Adjust a flat bool vector so exactly `count` entries are True, flipping random entries."""
    chosen = chosen.clone()
    surplus = int(chosen.sum()) - count
    pool = chosen.nonzero().flatten() if surplus > 0 else (~chosen).nonzero().flatten()
    flip = pool[torch.randperm(len(pool), generator=generator)[: abs(surplus)]]
    chosen[flip] = surplus < 0
    return chosen


@MASK_GENERATORS.register_module(name="uniform")
class UniformMask(MaskGenerator):
    """UM-MAE's uniform sampling: keep one random unit in every 2×2 block (ratio 0.75, grid must be even).

    Li et al., 2022 ("Uniform Masking"); the mask ratio is fixed at 0.75 by construction.
    """

    def __init__(self, mask_ratio: float = 0.75) -> None:
        if abs(mask_ratio - 0.75) > 1e-6:
            raise ValueError(f"uniform masking keeps one unit per 2x2 block: mask ratio must be 0.75, got {mask_ratio}")
        super().__init__(mask_ratio)

    def sample(self, grid: tuple[int, int], generator: torch.Generator | None) -> torch.Tensor:
        height, width = grid
        if height % 2 or width % 2:
            raise ValueError(f"uniform masking needs an even unit grid, got {height}x{width}")
        blocks_h, blocks_w = height // 2, width // 2
        pick = torch.randint(0, 4, (blocks_h, blocks_w), generator=generator)
        visible = torch.zeros(blocks_h, blocks_w, 4, dtype=torch.bool)
        visible.scatter_(2, pick.unsqueeze(-1), True)
        return visible.view(blocks_h, blocks_w, 2, 2).permute(0, 2, 1, 3).reshape(height, width)


@MASK_GENERATORS.register_module(name="batch_shared")
class BatchSharedMask(MaskGenerator):
    """One mask for the whole batch (drawn from the first sample's seed) from any other generator."""

    def __init__(self, mask_ratio: float = 0.75, base: str = "random") -> None:
        super().__init__(mask_ratio)
        self.base = MASK_GENERATORS.build({"type": base, "mask_ratio": mask_ratio})

    def __call__(
        self, batch_size: int, grid: tuple[int, int], seeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        first = self.base(1, grid, None if seeds is None else seeds[:1])
        return first.expand(batch_size, *grid).clone()


class MaskPyramid:
    """The per-unit visible map repeated to each finer stride; exact because units align with strides."""

    def __init__(self, visible: torch.Tensor, unit: int) -> None:
        self.visible = visible
        self.unit = unit
        self._levels: dict[int, torch.Tensor] = {unit: visible}

    def at(self, stride: int) -> torch.Tensor:
        """The B×(H/stride)×(W/stride) visible map for a stage of the given stride (a divisor of the unit)."""
        if stride not in self._levels:
            if self.unit % stride:
                raise ValueError(f"stride {stride} does not divide the mask unit {self.unit}")
            factor = self.unit // stride
            self._levels[stride] = self.visible.repeat_interleave(factor, 1).repeat_interleave(factor, 2)
        return self._levels[stride]
