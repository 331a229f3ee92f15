"""Two CPU processes (torchrun, gloo) with half the batch each follow the one-process full-batch run.

The union of both ranks' batch i is the single process's batch i (DefaultSampler), masks and flips are seeded per
sample, and every sample masks the same number of units, so the mean of the ranks' losses is the full-batch loss
and DDP's averaged gradient is the full-batch gradient. Only BatchNorm differs: per rank it normalises with its
half's statistics, unless `sync_bn='torch'` sums them over the ranks (`hiermae.sparse.norm`).
"""

import os
import signal
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hiermae.sparse.norm import AllReduceBatchNorm2d, batch_norm_sites, masked_batch_norm

from small_training import ROOT, logged_losses, small_options, train_command

ITERS = 6
BATCH = 4
# Measured here (6 iterations, AdamW): synced BN 0 at iteration 1, 1.1e-4 at most (float summation order, which
# AdamW's sign-like first steps amplify); per-rank BN 2.2e-3 at iteration 1, 3.2e-3 at most.
SYNC_LOSS_TOLERANCE = 5e-4
SYNC_FIRST_LOSS_TOLERANCE = 1e-6  # the first loss is computed before any update: only summation order differs
PER_RANK_FIRST_LOSS_GAP = 5e-4  # at least this: half-batch BatchNorm statistics change the very first loss
PER_RANK_LOSS_TOLERANCE = 1e-2
# BatchNorm running statistics after 6 iterations, measured: synced 6.3e-3 at most, per-rank 0.44.
SYNC_STATS_TOLERANCE = 0.02
PER_RANK_STATS_GAP = 0.05


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command: list[str], timeout: float = 300) -> str:
    """Run `command` in its own process group; kill the whole group afterwards so no worker can outlive a test."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == 0, output[-4000:]
    return output


def train(work_dir: Path, processes: int, *options: str) -> None:
    """Pretrain on `BATCH` images a step, split over `processes` ranks (more than one: torchrun on gloo)."""
    small = small_options(iters=ITERS, images=64, checkpoint_every=ITERS, batch_size=BATCH // processes)
    # log each iteration's own loss, not a running mean
    command = train_command(work_dir, options=[*small, "log_processor.window_size=1", *options])
    if processes > 1:
        launcher = [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_port",
            str(free_port()),
        ]
        command = [command[0], *launcher, *command[1:], "--launcher", "pytorch"]
    run(command)


def loss_per_iteration(work_dir: Path) -> list[float]:
    losses = logged_losses(work_dir)
    assert sorted(losses) == list(range(1, ITERS + 1))
    return [losses[i] for i in range(1, ITERS + 1)]


def running_stats(work_dir: Path) -> dict[str, torch.Tensor]:
    """BatchNorm running means and variances of the last checkpoint (rank 0's, the one mmengine saves)."""
    state = torch.load(work_dir / f"iter_{ITERS}.pth", map_location="cpu", weights_only=False)["state_dict"]
    return {key: value for key, value in state.items() if key.endswith(("running_mean", "running_var"))}


def gaps(runs: dict[str, Path], name: str) -> tuple[float, float, float]:
    """First-iteration loss difference, largest loss difference and largest running-stat difference to 'single'."""
    single, other = loss_per_iteration(runs["single"]), loss_per_iteration(runs[name])
    reference, stats = running_stats(runs["single"]), running_stats(runs[name])
    assert reference and reference.keys() == stats.keys()
    stats_gap = max(float((reference[k] - stats[k]).abs().max()) for k in reference)
    loss_gap = max(abs(x - y) for x, y in zip(single, other, strict=True))
    print(f"{name}: loss difference {abs(single[0] - other[0]):.3g} at iteration 1, {loss_gap:.3g} at most over "
          f"{ITERS}; BatchNorm running statistics {stats_gap:.3g} at most")  # fmt: skip
    return abs(single[0] - other[0]), loss_gap, stats_gap


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One full-batch single-process run, and two 2-process runs: per-rank and synchronised BatchNorm."""
    root = tmp_path_factory.mktemp("ddp")
    train(root / "single", 1)
    train(root / "per_rank", 2)
    train(root / "sync", 2, "sync_bn=torch")
    return {name: root / name for name in ("single", "per_rank", "sync")}


@pytest.mark.slow
def test_two_processes_with_synced_batchnorm_follow_the_single_process_run(runs):
    """The logged loss is the mean over ranks; with BatchNorm statistics summed over ranks it is the full batch's."""
    first, most, stats = gaps(runs, "sync")
    assert first <= SYNC_FIRST_LOSS_TOLERANCE
    assert most <= SYNC_LOSS_TOLERANCE
    assert stats <= SYNC_STATS_TOLERANCE


@pytest.mark.slow
def test_per_rank_batchnorm_differs_by_its_statistics_only(runs):
    """Each rank normalises with its half's statistics: the loss moves from the first iteration, but stays close."""
    first, most, stats = gaps(runs, "per_rank")
    assert first >= PER_RANK_FIRST_LOSS_GAP
    assert most <= PER_RANK_LOSS_TOLERANCE
    assert stats >= PER_RANK_STATS_GAP


BN_PATHS = {
    "sites": lambda x, visible, bn: batch_norm_sites(x, bn),
    "masked_dense": lambda x, visible, bn: masked_batch_norm(x, visible, bn),
    "module": lambda x, visible, bn: bn(x),
}


def batch_norm_case(rank: int, world: int) -> dict[str, dict[str, torch.Tensor]]:
    """Each BatchNorm path on this rank's share of one fixed batch: outputs, input and parameter gradients, stats."""
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "sites": torch.randn(16, 3, generator=generator) * 2 + 1,
        "masked_dense": torch.randn(4, 3, 4, 4, generator=generator) * 2 + 1,
        "module": torch.randn(4, 3, 4, 4, generator=generator) * 2 + 1,
    }
    visible = torch.rand(4, 4, 4, generator=generator) > 0.4
    results = {}
    for name, path in BN_PATHS.items():
        x = inputs[name]
        share = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        bn = AllReduceBatchNorm2d(3)
        with torch.no_grad():
            bn.weight.copy_(torch.tensor([0.5, 1.0, 1.5]))
            bn.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
        mine = x[share].clone().requires_grad_()
        out = path(mine, visible[share], bn)
        probe = torch.randn(x.shape, generator=generator)[share]
        (out * probe).sum().backward()
        parameter_grads = torch.cat([bn.weight.grad, bn.bias.grad])
        if dist.is_initialized():
            dist.all_reduce(parameter_grads)
        results[name] = {
            "out": out.detach(),
            "grad": mine.grad,
            "parameter_grads": parameter_grads,
            "running": torch.cat([bn.running_mean, bn.running_var]),
        }
    return results


def batch_norm_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One gloo rank of `test_synced_batchnorm_equals_the_full_batch_on_every_path`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        torch.save(batch_norm_case(rank, world), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_synced_batchnorm_equals_the_full_batch_on_every_path(tmp_path):
    """Two ranks with half the batch each give the full batch's outputs, gradients and running statistics.

    Paths: the sparse site rows, the masked-dense reference, and the module (the decoder's BatchNorms).
    """
    context = mp.start_processes(
        batch_norm_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=False, start_method="fork"
    )
    deadline = time.monotonic() + 120
    try:
        while not context.join(timeout=1):
            assert time.monotonic() < deadline, "gloo workers did not finish in 120 s"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    reference = batch_norm_case(0, 1)
    for name, expected in reference.items():
        for key in ("out", "grad"):
            joined = torch.cat([rank[name][key] for rank in ranks])
            torch.testing.assert_close(joined, expected[key], rtol=1e-5, atol=1e-5, msg=f"{name} {key}")
        for key in ("parameter_grads", "running"):
            for rank in ranks:
                torch.testing.assert_close(rank[name][key], expected[key], rtol=1e-5, atol=1e-5, msg=f"{name} {key}")
