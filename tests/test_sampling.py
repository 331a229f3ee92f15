"""Infinite, resumable sampling with iteration tags, and masks + plans drawn where batches are assembled."""

import itertools
import subprocess
from unittest import mock

import torch
from mmengine.logging import MessageHub
from torch.utils.data import DataLoader

import hiermae
from hiermae.data.collate import MaskCollate, MaskedBatch
from hiermae.data.datasets import FashionMNIST
from hiermae.data.sampling import DrawnDataset, InfiniteIndexSampler, IterationBatchSampler
from hiermae.masking.plans import tensor_leaves

from small_training import ROOT, small_options, train_command


def take(iterable, count: int) -> list:
    return list(itertools.islice(iterable, count))


def test_passes_are_permutations_that_follow_each_other_without_a_break() -> None:
    sampler = InfiniteIndexSampler(range(10), seed=3)
    indices = take(iter(sampler), 35)
    for start in (0, 10, 20):
        assert sorted(indices[start : start + 10]) == list(range(10))
    assert indices[:10] != indices[10:20]  # each pass has its own order
    assert take(iter(InfiniteIndexSampler(range(10), seed=3)), 35) == indices  # and it is reproducible


def test_ranks_take_disjoint_positions_that_together_cover_every_pass() -> None:
    shares = []
    for rank in range(3):
        with mock.patch("hiermae.data.sampling.get_dist_info", return_value=(rank, 3)):
            shares.append(take(iter(InfiniteIndexSampler(range(12), seed=5)), 8))
    first_two_passes = [index for share in shares for index in share]
    assert sorted(first_two_passes) == sorted(list(range(12)) * 2)


def test_skipping_to_an_iteration_continues_the_same_batches() -> None:
    batches = IterationBatchSampler(InfiniteIndexSampler(range(10), seed=1), batch_size=4)
    straight = take(iter(batches), 9)
    assert [drawn.iteration for drawn in straight[7]] == [7] * 4
    resumed = IterationBatchSampler(InfiniteIndexSampler(range(10), seed=1), batch_size=4)
    resumed.skip_to(5)
    assert take(iter(resumed), 4) == straight[5:9]


def test_workers_draw_the_masks_and_plans_the_model_would_draw() -> None:
    """A batch from two data-loader workers carries its MaskedBatch; the model, given the same batch without it,
    draws the same mask from the runner's iteration and builds the same plan."""
    model = hiermae.build_pretrainer("swin_tiny_patch4_window7_224", input_size=64)
    dataset = DrawnDataset(FashionMNIST(limit=32, image_size=64))
    sampler = IterationBatchSampler(InfiniteIndexSampler(dataset, seed=0), batch_size=4)
    sampler.skip_to(3)
    collate = MaskCollate(model.mask_planner("cpu"), model.mask_seed, model.input_size)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=2)
    batch = next(iter(loader))
    drawn = batch["data_samples"]["masked"]
    assert isinstance(drawn, MaskedBatch) and batch["data_samples"]["iteration"] == [3] * 4
    MessageHub.get_current_instance().update_info("iter", 3)
    own = model.masked_batch(torch.zeros(4, 3, 64, 64), {"index": batch["data_samples"]["index"]}, None)
    assert torch.equal(own.visible, drawn.visible)
    assert all(torch.equal(a, b) for a, b in zip(tensor_leaves(own.plan), tensor_leaves(drawn.plan), strict=True))


def test_plain_integer_keys_read_the_wrapped_dataset() -> None:
    inner = FashionMNIST(limit=4, image_size=32)
    wrapped = DrawnDataset(inner)
    assert len(wrapped) == 4 and wrapped.metainfo == inner.metainfo
    assert torch.equal(wrapped[2]["inputs"], inner[2]["inputs"]) and "iteration" not in wrapped[2]["data_samples"]


def test_training_over_many_passes_never_restarts_the_loader_and_resumes_without_rereading(tmp_path) -> None:
    """tools/train.py over ~3 passes of 12 images (batch 4, 9 iterations): no restart warning; resuming at 6 moves
    the sampler instead of reading 6 batches again."""
    def run(iters: int, *args: str) -> str:
        options = small_options(iters=iters, images=12, checkpoint_every=3)
        done = subprocess.run(train_command(tmp_path, *args, options=options), cwd=ROOT, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout + done.stderr

    first = run(6)
    assert "Reach the end of the dataloader" not in first
    resumed = run(9, "--resume")
    assert "data resumed at iteration 6: no batch is read twice" in resumed
    assert "Advance dataloader" not in resumed and "Reach the end of the dataloader" not in resumed
