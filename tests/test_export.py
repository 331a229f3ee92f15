"""Export round trips for every family and format, with strict key reports, equal features and named errors."""

import importlib.util
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from mmengine.config import Config, ConfigDict

from hiermae.downstream.checkpoints import CheckpointError, create_timm_model
from hiermae.downstream.export import export_checkpoint, registry_for

REPO = Path(__file__).parents[1]
SWIN = "swin_tiny_patch4_window7_224"


def write_pretraining_checkpoint(path: Path, backbone: str, input_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """An mmengine-style MaskedPretrainer checkpoint: encoder under `encoder.model.`, a decoder, the config text."""
    torch.manual_seed(seed)
    weights = create_timm_model(backbone, input_size, num_classes=0).state_dict()
    state_dict = {"encoder.model." + k: v for k, v in weights.items()}
    state_dict["decoder.head.weight"] = torch.zeros(3, 8)
    state_dict["encoder.mask_token"] = torch.zeros(1, 1, 8)
    cfg = Config(dict(model=dict(type="MaskedPretrainer", backbone=backbone, input_size=input_size)))
    torch.save({"state_dict": state_dict, "meta": {"cfg": cfg.pretty_text, "epoch": 0}}, path)
    return weights


def exported(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def timm_stage_maps(model: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The last four stage outputs (NCHW) of a timm ResNet / ConvNeXt / Swin, before any final norm."""
    return list(model.forward_intermediates(images, indices=4, norm=False, intermediates_only=True))[-4:]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, dict[str, torch.Tensor]]]:
    """One pretraining checkpoint per family (Swin at 224 px so that no window is clamped), with its weights."""
    root = tmp_path_factory.mktemp("pretrained")
    sizes = {"resnet18": 64, "convnext_atto": 64, SWIN: 224}
    return {
        name: (root / f"{name}.pth", size, write_pretraining_checkpoint(root / f"{name}.pth", name, size))
        for name, size in sizes.items()
    }


@pytest.mark.parametrize("backbone", ["resnet18", "convnext_atto", SWIN])
def test_timm_export_strict_loads_and_reports_head_keys(tmp_path: Path, pretrained: dict, backbone: str) -> None:
    checkpoint, size, weights = pretrained[backbone]
    result = export_checkpoint(checkpoint, "timm", tmp_path / "timm.pth")
    state_dict = exported(tmp_path / "timm.pth")
    assert result.report.ok and result.report.loaded == len(state_dict)
    assert result.report.initialised and all(k.startswith(("head.", "fc.")) for k in result.report.initialised)
    assert "decoder.head.weight" in " ".join(result.notes) and "encoder.mask_token" in " ".join(result.notes)
    assert state_dict.keys() == {k for k in weights if not k.startswith(("head.", "fc."))}
    assert all(torch.equal(state_dict[k], weights[k]) for k in state_dict)
    model = timm.create_model(backbone, num_classes=0, **({"img_size": size} if backbone == SWIN else {}))
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    assert not unexpected and all(k.startswith(("head.", "fc.")) for k in missing)


@pytest.mark.parametrize(
    ("backbone", "fmt"),
    [
        ("resnet18", "mmdet"),
        ("resnet18", "mmseg"),
        ("convnext_atto", "mmdet"),
        ("convnext_atto", "mmseg"),
        (SWIN, "mmdet"),
        pytest.param(SWIN, "mmseg", marks=pytest.mark.slow),  # same names as mmdet's Swin; 25 s on 2 busy cores
    ],
)
def test_mm_export_gives_the_same_stage_maps(tmp_path: Path, pretrained: dict, backbone: str, fmt: str) -> None:
    checkpoint, size, weights = pretrained[backbone]
    result = export_checkpoint(checkpoint, fmt, tmp_path / f"{fmt}.pth")
    assert result.report.ok and not result.report.unexpected and not result.report.missing
    kind = {"resnet18": "ResNet", "convnext_atto": "TimmConvNeXt", SWIN: "SwinTransformer"}[backbone]
    extra = dict(depth=18) if kind == "ResNet" else dict(backbone=backbone) if kind == "TimmConvNeXt" else {}
    init_cfg = ConfigDict(type="Pretrained", checkpoint=str(tmp_path / f"{fmt}.pth"))
    target = registry_for(fmt).build(dict(type=kind, _scope_=fmt, init_cfg=init_cfg, **extra))
    target.init_weights()
    target.eval()  # mmdet's ResNet.train returns None
    reference = create_timm_model(backbone, size, num_classes=0).eval()
    reference.load_state_dict(weights)
    images = torch.randn(1, 3, size, size)
    with torch.no_grad():
        expected, maps = timm_stage_maps(reference, images), target(images)
    if kind == "SwinTransformer":
        # mmdet/mmseg's out norms: fresh LayerNorms on stages 1-3, timm's final norm on stage 4. Their Swin keeps
        # shifting windows that cover the whole 7x7 map where timm (and the original) stops, so stage 4 is
        # compared by weights only.
        relative_indices = [k for k in target.state_dict() if k.endswith("relative_position_index")]
        norms = [f"norm{i}.{p}" for i in range(3) for p in ("bias", "weight")]
        assert sorted(result.report.initialised) == sorted(norms + relative_indices)
        assert torch.equal(target.norm3.weight, weights["norm.weight"])
        expected = [F.layer_norm(e.permute(0, 2, 3, 1), e.shape[1:2]).permute(0, 3, 1, 2) for e in expected[:3]]
        maps = maps[:3]
    assert len(maps) == len(expected)
    for got, want in zip(maps, expected, strict=True):
        torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


def test_swin_window_difference_is_interpolated(tmp_path: Path) -> None:
    write_pretraining_checkpoint(tmp_path / "pretrain.pth", SWIN, 64)  # windows clamp to 7, 7, 4, 2 at 64 px
    result = export_checkpoint(
        tmp_path / "pretrain.pth", "mmdet", tmp_path / "det.pth",
        target_config=REPO / "configs/downstream/mask-rcnn_swin-tiny_fpn_scenes.py",
    )  # fmt: skip
    resized = [n for n in result.notes if n.startswith("resized")]
    assert len(resized) == 6 + 2  # the blocks of stages 3 and 4
    assert all("→ (169, " in n for n in resized)
    timm_result = export_checkpoint(tmp_path / "pretrain.pth", "timm", tmp_path / "timm.pth", input_size=224)
    assert timm_result.report.ok and len([n for n in timm_result.notes if n.startswith("resized")]) == 8


def test_vit_position_embedding_is_resampled_and_mm_formats_refused(tmp_path: Path) -> None:
    write_pretraining_checkpoint(tmp_path / "vit.pth", "vit_tiny_patch16_224", 64)
    result = export_checkpoint(tmp_path / "vit.pth", "timm", tmp_path / "timm.pth", input_size=96)
    assert result.report.ok and "resized pos_embed: (1, 17, 192) → (1, 37, 192)" in result.notes
    with pytest.raises(CheckpointError, match="mmdet/mmseg export supports resnet, swin, convnext, not vit"):
        export_checkpoint(tmp_path / "vit.pth", "mmdet", tmp_path / "det.pth")


def test_plain_timm_state_dict_needs_and_takes_backbone(tmp_path: Path) -> None:
    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="--backbone"):
        export_checkpoint(tmp_path / "plain.pth", "timm", tmp_path / "out.pth")
    result = export_checkpoint(tmp_path / "plain.pth", "mmdet", tmp_path / "out.pth", backbone="resnet18")
    assert result.report.ok and "fc.weight" in " ".join(result.notes)


def test_checkpoint_of_another_backbone_is_a_named_error(tmp_path: Path) -> None:
    write_pretraining_checkpoint(tmp_path / "pretrain.pth", "resnet18", 64)
    with pytest.raises(CheckpointError, match="not a resnet34 encoder"):
        export_checkpoint(tmp_path / "pretrain.pth", "timm", tmp_path / "out.pth", backbone="resnet34")
    with pytest.raises(CheckpointError, match="cannot initialise a SwinTransformer"):
        export_checkpoint(
            tmp_path / "pretrain.pth", "mmdet", tmp_path / "out.pth",
            target_config=REPO / "configs/downstream/mask-rcnn_swin-tiny_fpn_scenes.py",
        )  # fmt: skip
    assert not (tmp_path / "out.pth").exists()


def test_resnet_target_of_other_depth_fails_strictly(tmp_path: Path) -> None:
    write_pretraining_checkpoint(tmp_path / "pretrain.pth", "resnet18", 64)
    config = tmp_path / "r50.py"
    config.write_text("model = dict(backbone=dict(type='ResNet', depth=50))\n")
    with pytest.raises(CheckpointError, match="unexpected"):
        export_checkpoint(tmp_path / "pretrain.pth", "mmdet", tmp_path / "out.pth", target_config=config)


def test_corrupted_checkpoint_is_a_named_error(tmp_path: Path) -> None:
    write_pretraining_checkpoint(tmp_path / "pretrain.pth", "resnet18", 64)
    data = (tmp_path / "pretrain.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        export_checkpoint(tmp_path / "truncated.pth", "timm", tmp_path / "out.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a dict"):
        export_checkpoint(tmp_path / "list.pth", "timm", tmp_path / "out.pth")


def test_export_cli_prints_report_and_exits_2_on_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("export_tool", REPO / "tools" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_pretraining_checkpoint(tmp_path / "pretrain.pth", "resnet18", 64)
    module.main([str(tmp_path / "pretrain.pth"), "--format", "mmseg", "--out", str(tmp_path / "seg.pth")])
    out = capsys.readouterr().out
    assert "strict load into mmseg ResNet" in out and "0 missing, 0 unexpected" in out
    with pytest.raises(SystemExit) as exit_info:
        module.main(
            [
                str(tmp_path / "pretrain.pth"),
                "--format",
                "timm",
                "--out",
                str(tmp_path / "x.pth"),
                "--backbone",
                "convnext_atto",
            ]
        )
    assert exit_info.value.code == 2 and "not a convnext_atto encoder" in capsys.readouterr().err
