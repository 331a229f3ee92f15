"""Export a pretrained encoder for timm, mmdet or mmseg, strict-loading the result into its target model.

- `timm`: the encoder under timm's names, for `timm.create_model(backbone)` minus its classifier head.
- `mmdet` / `mmseg`: weights for the backbone the family's descriptor names (`mm_backbone`: their own `ResNet`
  and `SwinTransformer`, or hiermae's `TimmBackbone`), renamed by its key map (`mm_state_dict`), so configs load
  them with `init_cfg=dict(type='Pretrained', checkpoint=FILE)`. The written file is then loaded a second time
  through the target's own `init_weights`, which must reproduce every exported tensor.
An export reads the checkpoint's input channels C: the timm target is `timm.create_model(backbone, in_chans=C)`,
the mmdet / mmseg backbone is built with `in_channels=C`.
Files are `{'state_dict': ..., 'meta': {backbone, format, input_size, in_chans, target}}` (plain types:
weights_only loads);
a timm export to `*.safetensors` holds the same tensors with the meta as string metadata (timm reads it natively).

An export never loses data: it is written to a temporary file beside `out`, checked there, and renamed over
`out` only when everything passed. `out` may not be the input, a directory or a read-only file, and every I/O error
names the path. mmdet's / mmseg's init logs (a few hundred lines per model) go to debug level.
"""

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from mmengine.registry import Registry
from safetensors import SafetensorError
from safetensors.torch import save_file as save_safetensors

from hiermae.backbones import MMBackbone, encoder_family
from hiermae.checkpoints import CheckpointError, compact
from hiermae.downstream.checkpoints import EncoderWeights, create_timm_model, read_encoder_weights
from hiermae.downstream.key_report import KeyReport, strict_load
from hiermae.downstream.resize import fit_to_target
from hiermae.utils import replace_atomically, require_mmdet, require_mmseg

FORMATS = ("timm", "mmdet", "mmseg")
SAFETENSORS = ".safetensors"


class OutputPathError(ValueError):
    """`out` names a file an export must not write: the input itself, a directory, or a read-only file."""


class ExportWriteError(OSError):
    """Writing the export failed (full disk, no permission, ...); the message names `out`, which is unchanged."""


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


def mm_target(backbone: str) -> MMBackbone:
    """The mmdet / mmseg backbone that `backbone`'s family declares (CheckpointError when it has none)."""
    family = encoder_family(backbone)
    try:
        target = family.mm_backbone(backbone)
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    if target is None:
        raise CheckpointError(f"{backbone}: the {family.family} family has no mmdet/mmseg backbone to export to")
    return target


def backbone_cfg_from_config(path: str | Path) -> dict:
    """`model.backbone` of an mmdet/mmseg config, without its pretrained-weights settings."""
    cfg = Config.fromfile(str(path)).model.backbone.to_dict()
    cfg.pop("init_cfg", None)
    cfg.pop("pretrained", None)
    return cfg


def check_target_type(backbone: str, target: MMBackbone, cfg: dict) -> None:
    """Raise CheckpointError unless the backbone config `cfg` builds the type `backbone`'s family exports to."""
    if cfg["type"].split(".")[-1] != target.type:
        raise CheckpointError(
            f"a {backbone} checkpoint cannot initialise a {cfg['type']} backbone (expected {target.type})"
        )


def with_in_channels(backbone_cfg: dict, in_chans: int) -> dict:
    """`backbone_cfg` reading `in_chans` input channels (mmdet's / mmseg's `in_channels`); CheckpointError when it
    states another count."""
    stated = backbone_cfg.get("in_channels", in_chans)
    if stated != in_chans:
        raise CheckpointError(
            f"the target backbone reads in_channels={stated}, but the checkpoint's stem reads {in_chans} channels"
        )
    return {**backbone_cfg, "in_channels": in_chans}


def check_output_path(checkpoint: Path, out: str | Path, fmt: str) -> None:
    """Refuse an `out` whose writing would destroy data or could not be loaded by the target."""
    path = Path(out)
    if str(out).endswith(("/", os.sep)) or path.is_dir():
        raise OutputPathError(f"--out {out} is a directory; name a file in it (e.g. {path / f'encoder_{fmt}.pth'})")
    if path.exists() and checkpoint.exists() and os.path.samefile(path, checkpoint):
        raise OutputPathError(f"--out {out} is the checkpoint being exported; writing it would destroy the input")
    if path.exists() and not path.stat().st_mode & 0o222:
        raise OutputPathError(f"--out {out} is read-only; remove it or choose another file")
    if path.suffix == SAFETENSORS and fmt != "timm":
        raise OutputPathError(f"--out {out}: {fmt} loads .pth files; .safetensors is written for --format timm")


def save(staged: Path, out: Path, state_dict: dict[str, torch.Tensor], meta: dict) -> None:
    """Write an export to `staged` (renamed to `out` later): a torch file, or safetensors when `out` asks for it."""
    tensors = {k: v.contiguous() for k, v in state_dict.items()}
    try:
        if out.suffix == SAFETENSORS:
            metadata = {"format": "pt", **{k: json.dumps(v) for k, v in meta.items() if k != "format"}}
            save_safetensors(tensors, str(staged), metadata={**metadata, "export_format": json.dumps(meta["format"])})
        else:
            torch.save({"state_dict": tensors, "meta": meta}, staged)
    except (OSError, RuntimeError, SafetensorError) as error:  # torch: a full disk is a zip-writer RuntimeError
        raise ExportWriteError(f"cannot write the export to {out}: {error}") from error


@contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """`replace_atomically(out)`, with any I/O error restated with `out`'s name."""
    try:
        with replace_atomically(out) as staged:
            yield staged
    except ExportWriteError:
        raise
    except OSError as error:
        raise ExportWriteError(f"cannot write the export to {out}: {error}") from error


class DebugLevel(logging.Filter):
    """Pass a record on at DEBUG level, and only when its logger shows DEBUG."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.logger.isEnabledFor(logging.DEBUG)


@contextmanager
def init_logs_at_debug() -> Iterator[None]:
    """Demote what mmengine logs while mmdet/mmseg models are built and initialised to DEBUG."""
    logger = MMLogger.get_current_instance()
    demote = DebugLevel(logger)
    logger.addFilter(demote)
    try:
        yield
    finally:
        logger.removeFilter(demote)


def export_timm(weights: EncoderWeights, out: Path, input_size: int) -> ExportResult:
    """Write the timm state dict (resized to `input_size` where needed) and strict-load it, minus the head."""
    target = create_timm_model(weights.backbone, input_size, in_chans=weights.in_chans)
    state_dict, notes = fit_to_target(weights.state_dict, target)
    head = encoder_family(weights.backbone).head_key_patterns()
    target_name = f"timm {weights.backbone} at {input_size} px, in_chans={weights.in_chans}"
    report = strict_load(target, state_dict, target_name, head)
    notes.append(
        f"head keys (not exported; timm.create_model(num_classes=...) adds them): {compact(report.initialised)}"
    )
    with staged_output(out) as staged:
        meta = {"backbone": weights.backbone, "format": "timm", "input_size": input_size, "in_chans": weights.in_chans}
        save(staged, out, state_dict, meta)
    return ExportResult(out, "timm", weights.backbone, report, notes)


def export_mm(weights: EncoderWeights, out: Path, fmt: str, backbone_cfg: dict) -> ExportResult:
    """Write weights for an mmdet/mmseg backbone, strict-load them, then check its own init_weights reads them."""
    family, mm = encoder_family(weights.backbone), mm_target(weights.backbone)
    check_target_type(weights.backbone, mm, backbone_cfg)
    backbone_cfg = with_in_channels(backbone_cfg, weights.in_chans)
    models = registry_for(fmt)
    backbone_cfg = {**backbone_cfg, "_scope_": fmt}  # build in fmt's scope whatever scope is current
    with init_logs_at_debug():
        target = models.build(backbone_cfg)
    holder = mm.holder(target)
    state_dict, notes = fit_to_target(family.mm_state_dict(weights.state_dict, backbone_cfg), holder)
    report = strict_load(holder, state_dict, f"{fmt} {mm.type}", mm.derived_keys)
    meta = {"backbone": weights.backbone, "format": fmt, "input_size": weights.input_size,
            "in_chans": weights.in_chans, "target": mm.type}  # fmt: skip
    with staged_output(out) as staged, init_logs_at_debug():
        save(staged, out, {mm.file_prefix + k: v for k, v in state_dict.items()}, meta)
        check_native_loading(models, mm, backbone_cfg, staged, state_dict)
    notes.append(f"checked: {fmt} {mm.type}(init_cfg=dict(type='Pretrained', checkpoint='{out}')) loads every tensor")
    return ExportResult(out, fmt, weights.backbone, report, notes)


def check_native_loading(
    models: Registry, mm: MMBackbone, backbone_cfg: dict, path: Path, expected: dict[str, torch.Tensor]
) -> None:
    """Build the backbone with init_cfg Pretrained=`path`, run its init_weights, and compare every tensor."""
    init_cfg = ConfigDict(type="Pretrained", checkpoint=str(path))  # mmdet's Swin reads it by attribute
    model = models.build({**backbone_cfg, "init_cfg": init_cfg})
    model.init_weights()
    loaded = mm.holder(model).state_dict()
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
    trust: bool = False,
) -> ExportResult:
    """Export `checkpoint`'s encoder in `fmt`; raises CheckpointError on any mismatch, never loads partially.

    `input_size` sets the timm target's image size (default: the pretraining size); `target_config` is an
    mmdet/mmseg config whose `model.backbone` is the target (default: the standard one for the backbone);
    `trust` unpickles the checkpoint in full. `out` is replaced only by a complete, checked export
    (`OutputPathError` for an `out` that must not be written, `ExportWriteError` naming `out` when writing
    fails).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    check_output_path(Path(checkpoint), out, fmt)
    weights = read_encoder_weights(checkpoint, backbone, trust=trust)
    notes = [
        f"source {checkpoint}: {weights.backbone} at {weights.input_size} px, {weights.in_chans} input channels, "
        f"{len(weights.state_dict)} tensors"
    ]
    if weights.dropped:
        notes.append(
            f"dropped (decoder, mask tokens, classifier head: {len(weights.dropped)}): {compact(weights.dropped)}"
        )
    out = Path(out)
    if fmt == "timm":
        result = export_timm(weights, out, input_size or weights.input_size)
    else:
        cfg = backbone_cfg_from_config(target_config) if target_config else mm_target(weights.backbone).config
        result = export_mm(weights, out, fmt, cfg)
    result.notes[:0] = notes
    return result
