"""`TimmConvNeXt`: timm's ConvNeXt (V1 or V2) as an mmdet / mmseg backbone, since neither ships one.

The timm model is held as `self.model`, so its weights keep timm's names and the timm export loads as is.
"""

import timm
import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from hiermae.downstream.checkpoints import CheckpointError, backbone_family, is_head_key
from hiermae.downstream.key_report import strict_load


class TimmConvNeXt(BaseModule):
    """The stage maps (NCHW, strides 4/8/16/32) of a timm ConvNeXt, for FPN / UperNet necks.

    `frozen_stages=k` freezes the stem and the first k stages (mmdet's convention; -1 freezes nothing).
    `init_cfg=dict(type='Pretrained', checkpoint=FILE)` strict-loads a timm-named state dict (`tools/export.py
    --format timm|mmdet|mmseg`), optionally under a `backbone.` prefix; anything missing or unexpected raises.
    """

    def __init__(
        self,
        backbone: str = "convnext_tiny",
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        frozen_stages: int = -1,
        drop_path_rate: float = 0.0,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if backbone_family(backbone) != "convnext":
            raise ValueError(f"TimmConvNeXt needs a timm ConvNeXt name (convnext_*, convnextv2_*), got {backbone!r}")
        self.model = timm.create_model(backbone, pretrained=False, num_classes=0, drop_path_rate=drop_path_rate)
        self.model.head = nn.Identity()
        if not out_indices or min(out_indices) < 0 or max(out_indices) >= len(self.model.stages):
            raise ValueError(f"out_indices must lie in 0..{len(self.model.stages) - 1}, got {out_indices}")
        self.backbone = backbone
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.out_channels = [self.model.feature_info[i]["num_chs"] for i in self.out_indices]
        self.freeze_stages()

    def freeze_stages(self) -> None:
        """Stop gradients and keep eval mode in the stem and the first `frozen_stages` stages."""
        if self.frozen_stages < 0:
            return
        for module in [self.model.stem, *self.model.stages[: self.frozen_stages]]:
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad = False

    def train(self, mode: bool = True) -> "TimmConvNeXt":
        super().train(mode)
        self.freeze_stages()
        return self

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.model.stem(images)
        outputs = []
        for index, stage in enumerate(self.model.stages[: max(self.out_indices) + 1]):
            x = stage(x)
            if index in self.out_indices:
                outputs.append(x)
        return tuple(outputs)

    def init_weights(self) -> None:
        """Strict-load the `Pretrained` checkpoint of init_cfg, if any (timm's own init otherwise)."""
        cfg = self.init_cfg or {}
        if cfg.get("type") != "Pretrained":
            return
        checkpoint = CheckpointLoader.load_checkpoint(cfg["checkpoint"], map_location="cpu")
        state_dict = checkpoint.get("state_dict", checkpoint)
        prefix = cfg.get("prefix") or ("backbone." if all(k.startswith("backbone.") for k in state_dict) else "")
        weights = {
            k[len(prefix) :]: v
            for k, v in state_dict.items()
            if k.startswith(prefix) and not is_head_key(k[len(prefix) :])
        }
        if not weights:
            raise CheckpointError(f"{cfg['checkpoint']} has no weights under prefix {prefix!r}")
        report = strict_load(self.model, weights, f"TimmConvNeXt({self.backbone})")
        print_log("\n".join([f"TimmConvNeXt: loaded {cfg['checkpoint']}", *report.lines()]), "current")
        self._is_init = True
