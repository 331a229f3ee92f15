"""What a pretraining run was really configured with, read back from its generated config for the report.

The report states each family's recipe from the config the run used (mask ratio, effective lr, weight decay,
betas, warm-up, decoder, target, loss), not from literals restated in the report code.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mmengine.config import Config

from experiments.plan import recipe_config


@dataclass(frozen=True)
class RecipeSummary:
    """The training choices of one generated pretraining config."""

    mask_ratio: float
    lr: float  # effective: after mmengine's batch-size scaling
    base_lr: float | None  # per 256 images, when the config scales lr with the batch size
    weight_decay: float
    betas: tuple[float, float]
    warmup_iters: int
    iters: int
    batch_size: int
    decoder: str
    target: str
    loss: str
    source: str

    def row(self) -> list[str]:
        lr = f"{self.lr:.2e}" + ("" if self.base_lr is None else f" ({self.base_lr:.2e} × {self.batch_size}/256)")
        return [
            f"{self.mask_ratio:g}", lr, f"{self.weight_decay:g}", f"({self.betas[0]:g}, {self.betas[1]:g})",
            f"{self.warmup_iters} of {self.iters}", self.decoder, self.target, self.loss, f"`{self.source}`",
        ]  # fmt: skip


COLUMNS = ["mask ratio", "lr", "weight decay", "AdamW betas", "warm-up iterations", "decoder", "target", "loss",
           "recipe"]  # fmt: skip


def decoder_text(decoder: dict) -> str:
    """A decoder config in words: its type and sizes, in key order (mmengine re-dumps configs with sorted keys)."""
    sizes = ", ".join(f"{key} {value}" for key, value in sorted(decoder.items()) if key != "type")
    return f"{decoder['type']} ({sizes})" if sizes else str(decoder["type"])


def summarize(config: Path, recipe: str | None) -> RecipeSummary:
    """Read the choices of a generated pretraining config (`recipe`: the file it starts from, None = shared bases)."""
    cfg = Config.fromfile(config)
    optimizer = cfg.optim_wrapper.optimizer
    batch = int(cfg.train_dataloader.batch_size)
    scaling = cfg.get("auto_scale_lr") or {}
    scaled = bool(scaling.get("enable"))
    lr = optimizer.lr * (batch / scaling["base_batch_size"] if scaled else 1.0)
    target = cfg.model.get("target") or {"type": "norm_pixels"}
    return RecipeSummary(
        mask_ratio=float(cfg.model.mask.mask_ratio),
        lr=lr,
        base_lr=optimizer.lr * 256 / scaling["base_batch_size"] if scaled else None,
        weight_decay=float(optimizer.get("weight_decay", 0.0)),
        betas=tuple(optimizer.get("betas", (0.9, 0.999))),
        warmup_iters=int(cfg.param_scheduler[0].end),
        iters=int(cfg.train_cfg.max_iters),
        batch_size=batch,
        decoder=decoder_text(cfg.model.decoder),
        target=target["type"],
        loss=(cfg.model.get("loss") or {"type": "mse"})["type"],
        source=recipe or "configs/pretrain/_base_ (shared)",
    )


def digest(recipe: str | None) -> str:
    """A short hash of a recipe with its bases, so a run folder notices when a recipe changed between sessions."""
    text = json.dumps(recipe_config(recipe).to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
