"""`TimmBackbone`: a timm model's stage maps as an mmdet / mmseg backbone, for the families whose descriptor names it
(`mm_backbone`: ConvNeXt, MobileNetV3 / EfficientNet), since neither library ships those models.

The timm model is held as `self.model`, minus its classifier head, so its weights keep timm's names and a timm
export loads as is. Stage maps come from timm's `forward_intermediates` at the stride-4, 8, 16 and 32 entries of
the model's `feature_info`.
"""

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import CheckpointLoader

from hiermae.backbones import TIMM_BACKBONE, encoder_family
from hiermae.checkpoints import CheckpointError
from hiermae.downstream.checkpoints import DEFAULT_INPUT_SIZE
from hiermae.downstream.key_report import strict_load

STAGE_STRIDES = (4, 8, 16, 32)


class TimmBackbone(BaseModule):
    """The stage maps (NCHW, strides 4/8/16/32) of a timm model, for FPN / UperNet necks.

    `out_indices` picks among the four stages. `frozen_stages=k` freezes the stem and the first k stages (mmdet's
    convention; -1 freezes nothing): every parameter timm registers before the end of stage k - 1 (k = 0: before
    stage 0), with the modules holding them kept in eval mode. `init_cfg=dict(type='Pretrained', checkpoint=FILE)`
    strict-loads a timm-named state dict (`tools/export.py --format timm|mmdet|mmseg`), optionally under a
    `backbone.` prefix; anything missing or unexpected raises. `in_channels` is the images' channel count (timm's
    `in_chans`), as mmdet's and mmseg's own backbones name it.
    """

    def __init__(
        self,
        backbone: str = "convnext_tiny",
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        frozen_stages: int = -1,
        drop_path_rate: float = 0.0,
        in_channels: int = 3,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.family = encoder_family(backbone)
        target = self.family.mm_backbone(backbone)
        if target is None or target.type != TIMM_BACKBONE:
            uses = f"mmdet/mmseg's {target.type}" if target else "no mmdet/mmseg backbone"
            raise ValueError(
                f"TimmBackbone serves the families whose descriptor names it; {backbone} ({self.family.family}) "
                f"uses {uses}"
            )
        if not out_indices or min(out_indices) < 0 or max(out_indices) >= len(STAGE_STRIDES):
            raise ValueError(f"out_indices must lie in 0..{len(STAGE_STRIDES) - 1}, got {out_indices}")
        if not -1 <= frozen_stages <= len(STAGE_STRIDES):
            raise ValueError(f"frozen_stages must lie in -1..{len(STAGE_STRIDES)}, got {frozen_stages}")
        model = self.family.create_timm_model(
            backbone, DEFAULT_INPUT_SIZE, num_classes=0, drop_path_rate=drop_path_rate, in_chans=in_channels
        )
        self.model = self.family.drop_head(model)
        stages = [i for i, info in enumerate(self.model.feature_info) if info["reduction"] in STAGE_STRIDES]
        if [self.model.feature_info[i]["reduction"] for i in stages] != list(STAGE_STRIDES):
            raise ValueError(f"{backbone} has no stage outputs at strides {STAGE_STRIDES}")
        self.backbone = backbone
        self.out_indices = tuple(out_indices)
        self.timm_indices = [stages[i] for i in self.out_indices]
        self.stage_modules = [self.model.feature_info[i]["module"] for i in stages]
        self.frozen_stages = frozen_stages
        self.out_channels = [self.model.feature_info[i]["num_chs"] for i in self.timm_indices]
        self.freeze_stages()

    def frozen_keys(self) -> list[str]:
        """The state-dict keys (timm's registration order) of the stem and the first `frozen_stages` stages."""
        if self.frozen_stages < 0:
            return []
        keys = list(self.model.state_dict())
        if self.frozen_stages == 0:
            first = self.stage_modules[0] + "."
            return keys[: next(i for i, key in enumerate(keys) if key.startswith(first))]
        last = self.stage_modules[self.frozen_stages - 1] + "."
        return keys[: 1 + max(i for i, key in enumerate(keys) if key.startswith(last))]

    def freeze_stages(self) -> None:
        """Stop gradients in the stem and the first `frozen_stages` stages, and keep every module all of whose
        weights are frozen in eval mode (its norms' statistics and drop paths with it)."""
        frozen = set(self.frozen_keys())
        holding, thawed = set(), set()  # modules (by name) holding some key, and some key not frozen
        for key in self.model.state_dict():
            path = key.split(".")[:-1]
            for depth in range(len(path) + 1):
                holding.add(".".join(path[:depth]))
                if key not in frozen:
                    thawed.add(".".join(path[:depth]))
        for name, module in self.model.named_modules():
            if name in holding - thawed:
                module.eval()
        for name, parameter in self.model.named_parameters():
            if name in frozen:
                parameter.requires_grad = False

    def train(self, mode: bool = True) -> "TimmBackbone":
        super().train(mode)
        self.freeze_stages()
        return self

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.model.forward_intermediates(
            images, indices=self.timm_indices, intermediates_only=True, stop_early=True
        )
        return tuple(maps)

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
            if k.startswith(prefix) and not self.family.is_head_key(k[len(prefix) :])
        }
        if not weights:
            raise CheckpointError(f"{cfg['checkpoint']} has no weights under prefix {prefix!r}")
        report = strict_load(self.model, weights, f"TimmBackbone({self.backbone})")
        print_log("\n".join([f"TimmBackbone: loaded {cfg['checkpoint']}", *report.lines()]), "current")
        self._is_init = True
