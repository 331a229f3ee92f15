"""TimmBackbone (timm models as mmdet/mmseg backbones), the transfer configs, and (slow) pretraining checkpoint →
export → Mask R-CNN, UperNet."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from hiermae.backbones.build import build_encoder
from hiermae.downstream.checkpoints import CheckpointError
from hiermae.downstream.export import export_checkpoint, registry_for
from hiermae.downstream.scenes import generate_scenes
from hiermae.downstream.timm_backbone import TimmBackbone

REPO = Path(__file__).parents[1]
CONFIGS = sorted((REPO / "configs" / "downstream").glob("*.py"))


def test_timm_backbone_stage_maps_and_frozen_stages() -> None:
    backbone = TimmBackbone("convnext_atto", out_indices=(1, 3), frozen_stages=1)
    maps = backbone(torch.randn(2, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(2, 80, 8, 8), (2, 320, 2, 2)]
    assert backbone.out_channels == [80, 320]
    backbone.train()
    frozen = [backbone.model.stem, backbone.model.stages[0]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for m in frozen) and backbone.model.stages[1].training
    assert all(p.requires_grad for p in backbone.model.stages[1].parameters())


def test_timm_backbone_serves_the_efficient_cnn_family_at_strides_4_to_32() -> None:
    backbone = TimmBackbone("mobilenetv3_large_100", frozen_stages=0)
    maps = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 24, 16, 16), (1, 40, 8, 8), (1, 112, 4, 4), (1, 960, 2, 2)]
    encoder = build_encoder("mobilenetv3_large_100", sparse=False, input_size=64)
    assert backbone.out_channels == encoder.out_channels
    assert backbone.model.state_dict().keys() == encoder.timm_state_dict().keys()  # the timm export loads as is
    backbone.train()  # frozen_stages=0: the stem (and the stride-2 block before stage 0) only
    assert not backbone.model.bn1.training and not backbone.model.blocks[0].training
    assert backbone.model.blocks[1].training and all(p.requires_grad for p in backbone.model.blocks[1].parameters())
    assert not any(p.requires_grad for p in backbone.model.conv_stem.parameters())


def test_timm_backbone_rejects_other_families_and_partial_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="resnet18 \\(resnet\\) uses mmdet/mmseg's ResNet"):
        TimmBackbone("resnet18")
    with pytest.raises(ValueError, match="frozen_stages must lie in -1..4"):
        TimmBackbone("convnext_atto", frozen_stages=5)
    weights = TimmBackbone("convnext_atto").model.state_dict()
    weights.pop("stages.3.blocks.1.mlp.fc2.weight")
    torch.save({"state_dict": weights}, tmp_path / "partial.pth")
    backbone = TimmBackbone("convnext_atto", init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "partial.pth")))
    with pytest.raises(CheckpointError, match="missing: stages.3.blocks.1.mlp.fc2.weight"):
        backbone.init_weights()


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_downstream_config_builds_its_model(config: Path) -> None:
    cfg = Config.fromfile(str(config))
    scope = cfg.default_scope
    assert scope in ("mmdet", "mmseg") and cfg.custom_imports.imports == [f"hiermae.downstream.{scope}_models"]
    model = registry_for(scope).build({**cfg.model, "_scope_": scope})
    classes = cfg.train_dataloader.dataset.metainfo.classes
    head = model.roi_head.bbox_head if scope == "mmdet" else model.decode_head
    assert head.num_classes == len(classes)
    channels = cfg.model.neck.in_channels if scope == "mmdet" else cfg.model.decode_head.in_channels
    with torch.no_grad():
        model.backbone.eval()
        maps = model.backbone(torch.randn(1, 3, 128, 128))
    assert [m.shape[1] for m in maps] == list(channels)


def cfg_options(data_root: Path, work: Path, checkpoint: Path, segmentation: bool) -> list[str]:
    """Command-line overrides that point a transfer config at generated scenes and pretrained weights, CPU-short."""
    options = [
        "train_cfg.max_iters=4", "train_cfg.val_interval=4", "default_hooks.checkpoint.interval=4",
        "default_hooks.logger.interval=1", "model.backbone.init_cfg.type=Pretrained",
        f"model.backbone.init_cfg.checkpoint={checkpoint}",
    ]  # fmt: skip
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        options += [
            f"{loader}.dataset.data_root={data_root}/",
            f"{loader}.num_workers=0",
            f"{loader}.persistent_workers=False",
        ]
        options += [f"{loader}.batch_size=2"]
    if not segmentation:
        options += [
            f"{e}.ann_file={data_root}/annotations/instances_val.json" for e in ("val_evaluator", "test_evaluator")
        ]
    return options


def train(config: str, options: list[str], work: Path) -> dict:
    """Run tools/train.py and return the validation metrics it logged."""
    command = [sys.executable, str(REPO / "tools" / "train.py"), str(REPO / config), "--work-dir", str(work)]
    completed = subprocess.run([*command, "--cfg-options", *options], capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-4000:]
    scalars = next(work.glob("*/vis_data/scalars.json"))
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    return {k: v for r in records for k, v in r.items() if "mAP" in k or "mIoU" in k}


@pytest.mark.slow
def test_pretraining_checkpoint_to_mask_rcnn_upernet_and_linear_probe(tmp_path: Path) -> None:
    from hiermae import build_pretrainer
    from hiermae.downstream.classification import evaluate

    pretrainer = build_pretrainer("resnet18", input_size=64)
    cfg = Config(dict(model=dict(type="MaskedPretrainer", backbone="resnet18", input_size=64)))
    torch.save({"state_dict": pretrainer.state_dict(), "meta": {"cfg": cfg.pretty_text}}, tmp_path / "pretrain.pth")
    generate_scenes(tmp_path / "shapes", mode="shapes", counts={"train": 8, "val": 4}, size=128, seed=0)

    detection = export_checkpoint(tmp_path / "pretrain.pth", "mmdet", tmp_path / "det.pth")
    assert detection.report.ok
    options = cfg_options(tmp_path / "shapes", tmp_path / "det", tmp_path / "det.pth", segmentation=False)
    metrics = train("configs/downstream/mask-rcnn_resnet18_fpn_shapes.py", options, tmp_path / "det")
    assert 0 <= metrics["coco/bbox_mAP"] <= 1 and 0 <= metrics["coco/segm_mAP"] <= 1

    segmentation = export_checkpoint(tmp_path / "pretrain.pth", "mmseg", tmp_path / "seg.pth")
    assert segmentation.report.ok
    options = cfg_options(tmp_path / "shapes", tmp_path / "seg", tmp_path / "seg.pth", segmentation=True)
    metrics = train("configs/downstream/upernet_resnet18_shapes.py", options, tmp_path / "seg")
    assert 0 <= metrics["mIoU"] <= 100

    export_checkpoint(tmp_path / "pretrain.pth", "timm", tmp_path / "timm.pth")
    accuracy = evaluate(tmp_path / "timm.pth", protocols=("linear",), train_limit=300, test_limit=100,
                        work_dir=tmp_path / "probe", linear_epochs=3)["linear"]  # fmt: skip
    assert 0.1 < accuracy <= 1
