"""Export a pretrained encoder for timm, mmdet or mmseg, strict-loading the result into its target model.

- `timm`: the encoder under timm's names, for `timm.create_model(backbone)` minus its classifier head.
- `mmdet` / `mmseg`: weights for their own `ResNet` and `SwinTransformer` (names, patch-merging order and window
  size converted), or for the registered `TimmConvNeXt`, so configs load them with
  `init_cfg=dict(type='Pretrained', checkpoint=FILE)`. The written file is then loaded a second time through the
  target's own `init_weights`, which must reproduce every exported tensor.
Files are `{'state_dict': ..., 'meta': {backbone, format, input_size, target}}` (plain types: weights_only loads).
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import Registry

from hiermae.dependencies import require_mmdet, require_mmseg
from hiermae.downstream.checkpoints import (
    CheckpointError,
    EncoderWeights,
    backbone_family,
    create_timm_model,
    read_encoder_weights,
)
from hiermae.downstream.key_maps import resnet_to_mm, swin_mm_arch, swin_to_mm
from hiermae.downstream.key_report import KeyReport, compact, strict_load
from hiermae.downstream.resize import fit_to_target

FORMATS = ("timm", "mmdet", "mmseg")
MM_BACKBONE_TYPES = {"resnet": "ResNet", "swin": "SwinTransformer", "convnext": "TimmConvNeXt"}
MM_RESNET_DEPTHS = (18, 34, 50, 101, 152)
# target keys an export does not provide: buffers the target derives from its config, new per-output norms
INITIALISED_BY_TARGET = {"SwinTransformer": (r"relative_position_index$", r"^norm\d\.")}
# mmdet's and mmseg's SwinTransformer.init_weights read only keys under `backbone.`
FILE_PREFIX = {"SwinTransformer": "backbone."}
# TimmConvNeXt loads timm-named files into its `model`
WEIGHTS_HOLDER = {"TimmConvNeXt": "model"}


@dataclass
class ExportResult:
    """What was written where, and the report of the strict load into the target."""

    path: Path
    format: str
    backbone: str
    report: KeyReport
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"exported {self.backbone} for {self.format} to {self.path}", *self.notes, *self.report.lines()]


def registry_for(fmt: str) -> Registry:
    """mmdet's or mmseg's model registry, with hiermae's backbones registered in it."""
    if fmt == "mmdet":
        require_mmdet(f"export to {fmt}")
        from mmdet.registry import MODELS

        import hiermae.downstream.mmdet_models  # noqa: F401
    elif fmt == "mmseg":
        require_mmseg(f"export to {fmt}")
        from mmseg.registry import MODELS

        import hiermae.downstream.mmseg_models  # noqa: F401
    else:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return MODELS


def default_backbone_cfg(backbone: str) -> dict:
    """The mmdet/mmseg backbone config that matches a timm encoder, with all four stage outputs."""
    family = backbone_family(backbone)
    if family == "resnet":
        depth = int(backbone.removeprefix("resnet"))
        if depth not in MM_RESNET_DEPTHS:
            raise CheckpointError(f"mmdet/mmseg ResNet has depths {MM_RESNET_DEPTHS}, not {backbone}'s {depth}")
        return dict(type="ResNet", depth=depth, out_indices=(0, 1, 2, 3))
    if family == "swin":
        return dict(type="SwinTransformer", **swin_mm_arch(backbone), out_indices=(0, 1, 2, 3))
    if family == "convnext":
        return dict(type="TimmConvNeXt", backbone=backbone, out_indices=(0, 1, 2, 3))
    raise CheckpointError(f"{backbone}: mmdet/mmseg export supports {', '.join(MM_BACKBONE_TYPES)}, not {family}")


def backbone_cfg_from_config(path: str | Path) -> dict:
    """`model.backbone` of an mmdet/mmseg config, without its pretrained-weights settings."""
    cfg = Config.fromfile(str(path)).model.backbone.to_dict()
    cfg.pop("init_cfg", None)
    cfg.pop("pretrained", None)
    return cfg


def to_mm_names(weights: EncoderWeights, cfg: dict) -> dict[str, torch.Tensor]:
    """Rename timm encoder weights for the mmdet/mmseg backbone `cfg` describes."""
    family = backbone_family(weights.backbone)
    kind = cfg["type"].split(".")[-1]
    if kind != MM_BACKBONE_TYPES.get(family):
        raise CheckpointError(
            f"a {weights.backbone} checkpoint cannot initialise a {cfg['type']} backbone "
            f"(expected {MM_BACKBONE_TYPES.get(family, 'a resnet, swin or convnext encoder')})"
        )
    if family == "resnet":
        return resnet_to_mm(weights.state_dict)
    if family == "swin":
        return swin_to_mm(weights.state_dict, tuple(cfg.get("out_indices", (0, 1, 2, 3))))
    return dict(weights.state_dict)


def save(path: Path, state_dict: dict[str, torch.Tensor], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {k: v.contiguous() for k, v in state_dict.items()}, "meta": meta}, path)


def export_timm(weights: EncoderWeights, out: Path, input_size: int) -> ExportResult:
    """Write the timm state dict (resized to `input_size` where needed) and strict-load it, minus the head."""
    target = create_timm_model(weights.backbone, input_size)
    state_dict, notes = fit_to_target(weights.state_dict, target)
    report = strict_load(target, state_dict, f"timm {weights.backbone} at {input_size} px", (r"^(head|fc)\.",))
    notes.append(
        f"head keys (not exported; timm.create_model(num_classes=...) adds them): {compact(report.initialised)}"
    )
    save(out, state_dict, {"backbone": weights.backbone, "format": "timm", "input_size": input_size})
    return ExportResult(out, "timm", weights.backbone, report, notes)


def export_mm(weights: EncoderWeights, out: Path, fmt: str, backbone_cfg: dict) -> ExportResult:
    """Write weights for an mmdet/mmseg backbone, strict-load them, then check its own init_weights reads them."""
    models = registry_for(fmt)
    backbone_cfg = {**backbone_cfg, "_scope_": fmt}  # build in fmt's scope whatever scope is current
    target = models.build(backbone_cfg)
    kind = backbone_cfg["type"].split(".")[-1]
    renamed = to_mm_names(weights, backbone_cfg)
    holder = getattr(target, WEIGHTS_HOLDER[kind]) if kind in WEIGHTS_HOLDER else target
    state_dict, notes = fit_to_target(renamed, holder)
    report = strict_load(holder, state_dict, f"{fmt} {kind}", INITIALISED_BY_TARGET.get(kind, ()))
    prefix = FILE_PREFIX.get(kind, "")
    meta = {"backbone": weights.backbone, "format": fmt, "input_size": weights.input_size, "target": kind}
    save(out, {prefix + k: v for k, v in state_dict.items()}, meta)
    check_native_loading(models, backbone_cfg, out, state_dict)
    notes.append(f"checked: {fmt} {kind}(init_cfg=dict(type='Pretrained', checkpoint='{out}')) loads every tensor")
    return ExportResult(out, fmt, weights.backbone, report, notes)


def check_native_loading(models: Registry, backbone_cfg: dict, path: Path, expected: dict[str, torch.Tensor]) -> None:
    """Build the backbone with init_cfg Pretrained=`path`, run its init_weights, and compare every tensor."""
    init_cfg = ConfigDict(type="Pretrained", checkpoint=str(path))  # mmdet's Swin reads it by attribute
    model = models.build({**backbone_cfg, "init_cfg": init_cfg})
    model.init_weights()
    kind = backbone_cfg["type"].split(".")[-1]
    loaded = (getattr(model, WEIGHTS_HOLDER[kind]) if kind in WEIGHTS_HOLDER else model).state_dict()
    differing = [k for k, v in expected.items() if not torch.equal(loaded[k], v)]
    if differing:
        raise CheckpointError(
            f"{backbone_cfg['type']}.init_weights did not load {len(differing)} tensors: {compact(differing)}"
        )


def export_checkpoint(
    checkpoint: str | Path,
    fmt: str,
    out: str | Path,
    *,
    backbone: str | None = None,
    input_size: int | None = None,
    target_config: str | Path | None = None,
) -> ExportResult:
    """Export `checkpoint`'s encoder in `fmt`; raises CheckpointError on any mismatch, never loads partially.

    `input_size` sets the timm target's image size (default: the pretraining size); `target_config` is an
    mmdet/mmseg config whose `model.backbone` is the target (default: the standard one for the backbone).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    weights = read_encoder_weights(checkpoint, backbone)
    notes = [f"source {checkpoint}: {weights.backbone} at {weights.input_size} px, {len(weights.state_dict)} tensors"]
    if weights.dropped:
        notes.append(
            f"dropped (decoder, mask tokens, classifier head: {len(weights.dropped)}): {compact(weights.dropped)}"
        )
    out = Path(out)
    if fmt == "timm":
        result = export_timm(weights, out, input_size or weights.input_size)
    else:
        cfg = backbone_cfg_from_config(target_config) if target_config else default_backbone_cfg(weights.backbone)
        result = export_mm(weights, out, fmt, cfg)
    result.notes[:0] = notes
    return result
