"""Infinite, resumable sampling for iteration-based pretraining, with each sample tagged by its iteration.

- `InfiniteIndexSampler`: every pass visits the dataset in a permutation seeded by (seed, pass), the passes
  follow each other without a break, and each rank takes every world-size-th position. Any position can be the
  start, computed directly rather than by reading the samples before it.
- `IterationBatchSampler`: batches of `Drawn(index, iteration)`, so a data-loader worker knows the iteration
  of the batch it assembles and can draw its masks there (`hiermae.data.collate.MaskCollate`).
- `DrawnDataset`: a dataset wrapper that reads `Drawn` keys and puts the iteration into `data_samples`.
- `ResumableIterBasedTrainLoop`: mmengine's iteration loop, but a resumed run moves the sampler to its
  iteration instead of loading and discarding every batch before it; the batches that follow are the ones the
  uninterrupted run saw.
"""

import itertools
from collections.abc import Iterator, Sized
from typing import Any, NamedTuple

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import print_log
from mmengine.registry import DATA_SAMPLERS, DATASETS, LOOPS
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import Dataset, IterableDataset, Sampler

from hiermae.utils import mix_seed


class Drawn(NamedTuple):
    """A dataset index and the training iteration whose batch it belongs to."""

    index: int
    iteration: int


@DATA_SAMPLERS.register_module()
class InfiniteIndexSampler(Sampler):
    """Dataset indices forever: pass p is a permutation seeded by (seed, p) (or 0, 1, 2, ... without shuffling);
    rank r of W takes global positions r, r + W, r + 2W, ... The seed is shared by all ranks."""

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: int | None = None) -> None:
        self.size = len(dataset)
        if self.size == 0:
            raise ValueError("InfiniteIndexSampler: the dataset is empty")
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else seed
        self.rank, self.world_size = get_dist_info()
        self.start = 0  # this rank's first position (in its own sequence)

    def start_at(self, position: int) -> None:
        """Make the next iteration begin at this rank's `position`-th index."""
        self.start = position

    def pass_order(self, number: int) -> torch.Tensor:
        """The dataset order of pass `number`."""
        if not self.shuffle:
            return torch.arange(self.size)
        generator = torch.Generator().manual_seed(mix_seed(self.seed, number))
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[int]:
        position = self.start * self.world_size + self.rank  # global position of this rank's next index
        number, order = position // self.size, None
        while True:
            if order is None or position // self.size != number:
                number = position // self.size
                order = self.pass_order(number)
            yield int(order[position % self.size])
            position += self.world_size

    def __len__(self) -> int:
        """One pass's share of this rank (the sequence itself never ends)."""
        return -(-(self.size - self.rank) // self.world_size)


@DATA_SAMPLERS.register_module()
class IterationBatchSampler(Sampler):
    """Batches of `batch_size` `Drawn(index, iteration)` from an `InfiniteIndexSampler`, starting at iteration 0
    or where `skip_to` moved it."""

    def __init__(self, sampler: InfiniteIndexSampler, batch_size: int) -> None:
        if not isinstance(sampler, InfiniteIndexSampler):
            raise TypeError(
                f"IterationBatchSampler needs sampler=dict(type='InfiniteIndexSampler'), got {type(sampler).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            # 0 would divide by zero in __len__, a negative size would give negative lengths and empty batches
            raise ValueError(f"IterationBatchSampler: batch_size must be an integer >= 1, got {batch_size!r}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.first_iteration = 0

    def skip_to(self, iteration: int) -> None:
        """Start the next pass over this sampler at `iteration`, without reading the batches before it."""
        self.first_iteration = iteration
        self.sampler.start_at(iteration * self.batch_size)

    def __iter__(self) -> Iterator[list[Drawn]]:
        indices = iter(self.sampler)
        for iteration in itertools.count(self.first_iteration):
            yield [Drawn(index, iteration) for index in itertools.islice(indices, self.batch_size)]

    def __len__(self) -> int:
        """Batches in one pass (the sequence itself never ends)."""
        return -(-len(self.sampler) // self.batch_size)


@DATASETS.register_module()
class DrawnDataset(Dataset):
    """`dataset` read with `Drawn` keys: each item's `data_samples` also holds its `iteration`. Plain integer keys
    read the wrapped dataset unchanged; other attributes are the wrapped dataset's."""

    def __init__(self, dataset: Dataset | dict) -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | Drawn) -> dict:
        if not isinstance(key, Drawn):
            return self.dataset[key]
        item = self.dataset[key.index]
        item["data_samples"] = {**item["data_samples"], "iteration": key.iteration}
        return item

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """`IterBasedTrainLoop` whose resume moves an `IterationBatchSampler` to the resumed iteration directly, and
    lets a streaming (iterable) dataset start a new pass instead of reading the skipped batches."""

    def run(self) -> torch.nn.Module:
        batch_sampler = getattr(self.dataloader, "batch_sampler", None)
        streaming = isinstance(self.dataloader.dataset, IterableDataset)  # e.g. ImageShards: nothing to skip to
        if not (streaming or isinstance(batch_sampler, IterationBatchSampler)):
            return super().run()
        if self._iter > 0 and streaming:
            print_log(f"data resumed at iteration {self._iter}: the stream starts a new pass (none re-read)", "current")
        elif self._iter > 0:
            batch_sampler.skip_to(self._iter)
            self.dataloader_iterator = _InfiniteDataloaderIterator(self.dataloader)
            print_log(f"data resumed at iteration {self._iter}: no batch is read twice", "current")
        runner = self.runner
        runner.call_hook("before_train")
        runner.call_hook("before_train_epoch")
        while self._iter < self._max_iters and not self.stop_training:  # mmengine's loop, without the skipping
            runner.model.train()
            self.run_iter(next(self.dataloader_iterator))
            self._decide_current_val_interval()
            if (
                runner.val_loop is not None
                and self._iter >= self.val_begin
                and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)
            ):
                runner.val_loop.run()
        runner.call_hook("after_train_epoch")
        runner.call_hook("after_train")
        return runner.model
