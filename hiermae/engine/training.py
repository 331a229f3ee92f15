"""Config assembly shared by `tools/train.py` and `tools/demo.py`, and multi-process training on CPUs."""

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import Runner

from hiermae.checkpoints import (
    NothingToResumeError,
    checkpoint_to_resume,
    compact,
    remove_stale_partials,
    saved_checkpoints,
)
from hiermae.data import MaskCollate, place_file_list_caches
from hiermae.engine.config_check import check_config_keys, check_option_keys
from hiermae.model import MaskedPretrainer
from hiermae.sparse import AllReduceBatchNorm2d


def enable_amp(cfg: Config) -> None:
    """Switch the optimiser wrapper to mixed precision: fp16 with loss scaling on a GPU, bf16 autocast on CPU."""
    wrapper = cfg.optim_wrapper
    if wrapper.get("type", "OptimWrapper") in ("AmpOptimWrapper", "AutocastOptimWrapper"):
        return
    if torch.cuda.is_available():
        wrapper.type = "AmpOptimWrapper"
        wrapper.setdefault("loss_scale", "dynamic")
    else:
        wrapper.type = "AutocastOptimWrapper"
        wrapper.dtype = "bfloat16"


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for CPU processes, optionally turning BatchNorms into `AllReduceBatchNorm2d` first.

    DDP refuses `nn.SyncBatchNorm` in a CPU module, so `sync_bn` on CPU converts to the all-reduce BatchNorm.
    """

    def __init__(self, module: torch.nn.Module, sync_bn: bool = False, **kwargs: Any) -> None:
        if sync_bn:
            module = AllReduceBatchNorm2d.convert(module)
        super().__init__(module=module, **kwargs)


def use_cpu_processes(cfg: Config) -> None:
    """Make mmengine's DDP set-up work on CPU processes (gloo).

    mmengine passes `device_ids=[LOCAL_RANK]`, which CPU modules refuse, and `sync_bn='torch'` converts to
    `nn.SyncBatchNorm`, which DDP refuses on CPU: wrap in `CPUDistributedDataParallel` instead, which syncs
    BatchNorm statistics itself when `sync_bn` is set.
    """
    sync_bn = cfg.pop("sync_bn", None)
    if sync_bn not in (None, "torch"):
        raise ValueError(f"sync_bn={sync_bn!r} is not available on CPU; use sync_bn='torch' or leave it unset")
    cfg.model_wrapper_cfg = dict(
        type="CPUDistributedDataParallel", device_ids=None, broadcast_buffers=False, sync_bn=sync_bn is not None
    )


def init_cpu_process_group(cfg: Config) -> None:
    """Join the torchrun process group without a GPU (mmengine's `init_dist` calls `torch.cuda.set_device`).

    mmengine skips its own initialisation when a group exists. The backend is `env_cfg.dist_cfg.backend` (gloo).
    """
    if torch.cuda.is_available() or dist.is_initialized():
        return
    dist_cfg = dict(cfg.get("env_cfg", {}).get("dist_cfg", {}))
    backend = dist_cfg.pop("backend", "gloo")
    dist.init_process_group(
        backend=backend, rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]), **dist_cfg
    )


def build_config(
    config: str,
    *,
    work_dir: str | None = None,
    resume: str | None = None,
    amp: bool = False,
    cfg_options: dict[str, Any] | None = None,
    launcher: str = "none",
    compile: bool = False,
) -> Config:
    """Load `config` and apply the command-line choices; `resume='auto'` resumes from the work dir's newest intact
    checkpoint (`NothingToResumeError` when there is none); `compile` turns on `torch.compile` (`enable_compile`).
    Without `work_dir` (and none in the config) the run gets a new folder (`default_work_dir`).

    Unknown keys, in the options or in the config's constructor dicts, raise `UnknownConfigKeyError`.
    """
    cfg = Config.fromfile(config)
    if cfg_options:
        check_option_keys(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    check_config_keys(cfg)
    cfg.launcher = launcher
    if launcher != "none" and not torch.cuda.is_available():
        use_cpu_processes(cfg)
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = default_work_dir(config, resume, launcher)
    place_file_list_caches(cfg)
    if amp:
        enable_amp(cfg)
    if compile:
        enable_compile(cfg)
    if resume == "auto":
        cfg.resume, cfg.load_from = True, str(checkpoint_to_resume(cfg.work_dir))
    elif resume:
        cfg.resume, cfg.load_from = True, resume
    return cfg


class WorkDirInUseError(FileExistsError):
    """A run that does not continue the work dir's own run, into a work dir holding another run's checkpoints."""


def default_work_dir(config: str, resume: str | None, launcher: str) -> str:
    """`work_dirs/<config name>/<start time>`: a new folder for each run, so that no run writes into another's.

    With `resume='auto'`, the newest such folder holding a checkpoint (or, from older versions, `work_dirs/<config
    name>` itself). The processes of a multi-process run start at different moments, so they must be given one.
    """
    runs = Path("work_dirs") / Path(config).stem
    if resume == "auto":
        held = [folder for folder in [runs, *sorted(runs.glob("*/"))] if saved_checkpoints(folder)]
        if not held:
            raise NothingToResumeError(
                f"--resume: no run of {config} in {runs} holds a checkpoint; pass --work-dir D to name the run"
            )
        return str(held[-1])
    if launcher != "none":
        raise ValueError(f"--launcher {launcher}: pass --work-dir, so that every process of the run writes to the same")
    return str(new_run_folder(runs))


def new_run_folder(parent: str | Path, prefix: str = "") -> Path:
    """`parent/<prefix><start time>` (`YYYYmmdd_HHMMSS`, then `_2`, `_3`, ... when taken), created here: the default
    work dir of the tools. Creating it is what claims it, so two runs started in the same second never share one."""
    stamp = Path(parent) / f"{prefix}{time.strftime('%Y%m%d_%H%M%S')}"
    for number in range(1, 1000):
        folder = stamp if number == 1 else stamp.with_name(f"{stamp.name}_{number}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder beside {stamp}")


def claim_work_dir(cfg: Config) -> list[Path]:
    """Make sure the run of `cfg` destroys no other run's results, and clear what a killed save left.

    A run that does not resume from a checkpoint of its own work dir (a new run, `load_from`, a resume from a file
    elsewhere) is refused with `WorkDirInUseError` when the work dir holds checkpoints: it would overwrite them and
    its rotation would delete them. Returns the stale temporary files of a killed save (`.iter_N.pth.*.partial`)
    that it removed; only the first process removes them.
    """
    work_dir = Path(cfg.work_dir)
    held = saved_checkpoints(work_dir)
    resumes_here = bool(cfg.get("resume")) and Path(cfg.load_from).resolve().is_relative_to(work_dir.resolve())
    if held and not resumes_here:
        raise WorkDirInUseError(
            f"work dir {work_dir} holds the checkpoints of another run ({compact([p.name for p in held], 4)}), which "
            "this run would overwrite. Continue that run with --resume, or give another --work-dir (without "
            "--work-dir every run gets a new folder)."
        )
    return remove_stale_partials(work_dir) if int(os.environ.get("RANK", "0")) == 0 else []


class Terminated(BaseException):
    """SIGTERM, raised in the main process so that cleanup (`finally`, the removal of a half-written file) runs."""


@contextmanager
def cleanup_on_sigterm() -> Iterator[None]:
    """While the block runs, SIGTERM raises `Terminated` in this process, so a checkpoint save in progress removes
    its temporary file; the process then ends by SIGTERM as it would have (exit status 143 in a shell).

    Forked children (data-loader workers) inherit the handler but end by the signal at once.
    """
    main_pid = os.getpid()

    def raise_terminated(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    except Terminated:
        print("stopped by SIGTERM", file=sys.stderr, flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)


def enable_compile(cfg: Config) -> None:
    """`torch.compile` the training step: for masked pretraining the model's own compiled computation
    (`MaskedPretrainer(compile=True)`: CUDA graphs on a GPU), for other models mmengine's compiled train step."""
    if cfg.model.get("type") == "MaskedPretrainer":
        cfg.model.compile = True
    else:
        cfg.compile = True


def plan_in_workers(runner: Runner) -> None:
    """Have the data-loader workers draw each batch's masks and build the sparse plans (`MaskCollate`).

    Applies to masked pretraining whose data loader samples with `IterationBatchSampler` (the workers then know
    each batch's iteration, which seeds its masks); otherwise the model draws them in its step, as before. Must
    run before `runner.train()` builds the data loader from its config.
    """
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    loader = runner._train_dataloader  # still the config dict: mmengine builds the loader in train()
    if not isinstance(model, MaskedPretrainer) or not isinstance(loader, dict):
        return
    batch_sampler = loader.get("batch_sampler")
    if not isinstance(batch_sampler, dict) or batch_sampler.get("type") != "IterationBatchSampler":
        return
    device_type = next(model.parameters()).device.type
    loader["dataset"] = dict(type="DrawnDataset", dataset=loader["dataset"])
    loader["collate_fn"] = MaskCollate(model.mask_planner(device_type), model.mask_seed, model.input_size)


def build_runner(cfg: Config) -> Runner:
    """mmengine's runner for `cfg`, with masks and plans drawn in the data-loader workers where possible."""
    runner = Runner.from_cfg(cfg)
    plan_in_workers(runner)
    return runner
