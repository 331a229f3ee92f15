"""Config assembly shared by `tools/train.py` and `tools/demo.py`."""

from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config


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


def build_config(
    config: str,
    *,
    work_dir: str | None = None,
    resume: str | None = None,
    amp: bool = False,
    cfg_options: dict[str, Any] | None = None,
    launcher: str = "none",
) -> Config:
    """Load `config` and apply the command-line choices; `resume='auto'` resumes from the work dir's last save."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(config).stem)
    if amp:
        enable_amp(cfg)
    if resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif resume:
        cfg.resume, cfg.load_from = True, resume
    return cfg
