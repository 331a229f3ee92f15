"""Per-sample randomness seeded by (base seed, iteration, dataset index).

Masks and flips drawn this way do not depend on batch-mates, process count or worker order, and a run resumed
at iteration k draws exactly what the uninterrupted run drew there.
"""

import torch
from mmengine.logging import MessageHub

_MASK64 = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """Hash integers into one 63-bit seed (splitmix64 steps), so nearby inputs give unrelated streams."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state ^ (int(part) & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & _MASK64
    return state


def sample_indices(data_samples: dict | list[dict] | None) -> list[int] | None:
    """Dataset indices of a batch: from mmengine's `pseudo_collate` (a dict of lists) or a list of dicts."""
    if isinstance(data_samples, dict):
        indices = data_samples.get("index")
    elif data_samples and isinstance(data_samples[0], dict):
        indices = [sample.get("index") for sample in data_samples]
    else:
        indices = None
    if indices is None or any(index is None for index in indices):
        return None
    return [int(index) for index in indices]


def batch_seeds(base_seed: int, data_samples: dict | list[dict] | None) -> torch.Tensor | None:
    """One seed per sample from the runner's current iteration and the sample's index, if indices are known."""
    indices = sample_indices(data_samples)
    if indices is None:
        return None
    iteration = MessageHub.get_current_instance().get_info("iter", 0)
    return torch.tensor([mix_seed(base_seed, iteration, index) for index in indices])
