"""Export round trips for every family and format, with strict key reports, equal features and named errors;
exports that cannot destroy data (the input, a directory, a read-only file, a full disk); safetensors; quiet."""

import importlib.util
import os
import resource
import signal
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict

from hiermae.backbones.build import encoder_family
from hiermae.checkpoints.keys import CheckpointError
from hiermae.downstream.checkpoints import create_timm_model, read_encoder_weights
from hiermae.downstream.export import ExportWriteError, OutputPathError, export_checkpoint, registry_for

from checkpoint_files import write_pretraining_checkpoint

REPO = Path(__file__).parents[1]
SWIN = "swin_tiny_patch4_window7_224"
MOBILENET = "mobilenetv3_large_100"


def exported(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def timm_stage_maps(model: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The last four stage outputs (NCHW) of a timm ResNet / ConvNeXt / Swin / MobileNetV3, before any final norm."""
    return list(model.forward_intermediates(images, indices=4, norm=False, intermediates_only=True))[-4:]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, dict[str, torch.Tensor]]]:
    """One pretraining checkpoint per family (Swin at 224 px so that no window is clamped), with its weights."""
    root = tmp_path_factory.mktemp("pretrained")
    sizes = {"resnet18": 64, "convnext_atto": 64, SWIN: 224, MOBILENET: 64}
    return {
        name: (root / f"{name}.pth", size, write_pretraining_checkpoint(root / f"{name}.pth", name, size))
        for name, size in sizes.items()
    }


@pytest.mark.parametrize("backbone", ["resnet18", "convnext_atto", SWIN, MOBILENET])
def test_timm_export_strict_loads_and_reports_head_keys(tmp_path: Path, pretrained: dict, backbone: str) -> None:
    checkpoint, size, weights = pretrained[backbone]
    is_head_key = encoder_family(backbone).is_head_key
    result = export_checkpoint(checkpoint, "timm", tmp_path / "timm.pth")
    state_dict = exported(tmp_path / "timm.pth")
    assert result.report.ok and result.report.loaded == len(state_dict)
    assert result.report.initialised and all(is_head_key(k) for k in result.report.initialised)
    assert "decoder.head.weight" in " ".join(result.notes) and "encoder.mask_token" in " ".join(result.notes)
    assert state_dict.keys() == {k for k in weights if not is_head_key(k)}
    assert all(torch.equal(state_dict[k], weights[k]) for k in state_dict)
    model = timm.create_model(backbone, num_classes=0, **({"img_size": size} if backbone == SWIN else {}))
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    assert not unexpected and all(is_head_key(k) for k in missing)


@pytest.mark.parametrize(
    ("backbone", "fmt"),
    [
        ("resnet18", "mmdet"),
        ("resnet18", "mmseg"),
        ("convnext_atto", "mmdet"),
        ("convnext_atto", "mmseg"),
        (SWIN, "mmdet"),
        pytest.param(SWIN, "mmseg", marks=pytest.mark.slow),  # same names as mmdet's Swin; 25 s on 2 busy cores
        (MOBILENET, "mmdet"),
        (MOBILENET, "mmseg"),
    ],
)
def test_mm_export_gives_the_same_stage_maps(tmp_path: Path, pretrained: dict, backbone: str, fmt: str) -> None:
    checkpoint, size, weights = pretrained[backbone]
    result = export_checkpoint(checkpoint, fmt, tmp_path / f"{fmt}.pth")
    assert result.report.ok and not result.report.unexpected and not result.report.missing
    kind = {"resnet18": "ResNet", "convnext_atto": "TimmBackbone", SWIN: "SwinTransformer", MOBILENET: "TimmBackbone"}[
        backbone
    ]  # what each family's descriptor names, written out here so that the test checks it
    extra = dict(depth=18) if kind == "ResNet" else dict(backbone=backbone) if kind == "TimmBackbone" else {}
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
    with pytest.raises(CheckpointError, match="the vit family has no mmdet/mmseg backbone"):
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


def export_tool():  # noqa: ANN201 - the tools/export.py module
    spec = importlib.util.spec_from_file_location("export_tool", REPO / "tools" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_cli_prints_report_and_exits_2_on_mismatch(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    module = export_tool()
    write_pretraining_checkpoint(tmp_path / "pretrain.pth", "resnet18", 64)
    module.main([str(tmp_path / "pretrain.pth"), "--format", "mmseg", "--out", str(tmp_path / "seg.pth")])
    out, err = capfd.readouterr()
    assert "strict load into mmseg ResNet" in out and "0 missing, 0 unexpected" in out
    # quiet: the key report only; mmengine's per-parameter init log (~250 lines) is at debug level
    assert "PretrainedInit" not in out + err and len((out + err).splitlines()) <= 8, out + err
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
    assert exit_info.value.code == 2 and "not a convnext_atto encoder" in capfd.readouterr().err


def test_out_equal_to_the_input_is_refused_and_the_input_kept(tmp_path: Path) -> None:
    write_pretraining_checkpoint(tmp_path / "pretrain.pth", "resnet18", 64)
    before = (tmp_path / "pretrain.pth").read_bytes()
    (tmp_path / "link.pth").symlink_to(tmp_path / "pretrain.pth")
    for out in (tmp_path / "pretrain.pth", tmp_path / "link.pth", tmp_path / "sub" / ".." / "pretrain.pth"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(OutputPathError, match=f"--out {out} is the checkpoint being exported"):
            export_checkpoint(tmp_path / "pretrain.pth", "timm", out)
    assert (tmp_path / "pretrain.pth").read_bytes() == before


def test_out_that_is_a_directory_or_read_only_or_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    write_pretraining_checkpoint(tmp_path / "pretrain.pth", "resnet18", 64)
    with pytest.raises(OutputPathError, match=f"--out {tmp_path} is a directory"):
        export_checkpoint(tmp_path / "pretrain.pth", "timm", tmp_path)
    with pytest.raises(OutputPathError, match="is a directory"):
        export_checkpoint(tmp_path / "pretrain.pth", "timm", f"{tmp_path}/exports/")  # a folder still to be made
    locked = tmp_path / "locked.pth"
    locked.write_bytes(b"an earlier export")
    locked.chmod(0o444)
    with pytest.raises(OutputPathError, match=f"--out {locked} is read-only"):
        export_checkpoint(tmp_path / "pretrain.pth", "timm", locked)
    assert locked.read_bytes() == b"an earlier export"
    with pytest.raises(OutputPathError, match="mmdet loads .pth files"):
        export_checkpoint(tmp_path / "pretrain.pth", "mmdet", tmp_path / "det.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked.pth", "pretrain.pth"]


@pytest.fixture
def file_size_limit():  # noqa: ANN201 - a context: writes past `limit` bytes fail with EFBIG, as on a full disk
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process

    def limit(size: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_full_disk_keeps_the_previous_export(tmp_path: Path, file_size_limit, suffix: str) -> None:
    write_pretraining_checkpoint(tmp_path / "pretrain.pth", "resnet18", 64)
    out = tmp_path / f"timm{suffix}"
    export_checkpoint(tmp_path / "pretrain.pth", "timm", out)
    before = out.read_bytes()
    write_pretraining_checkpoint(tmp_path / "other.pth", "resnet18", 64, seed=1)
    file_size_limit(1_000_000)  # the resnet18 export is ~45 MB
    with pytest.raises(ExportWriteError, match=f"cannot write the export to {out}"):
        export_checkpoint(tmp_path / "other.pth", "timm", out)
    assert out.read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]


def test_safetensors_export_loads_natively_in_timm_and_reads_back(tmp_path: Path) -> None:
    weights = write_pretraining_checkpoint(tmp_path / "pretrain.pth", "resnet18", 64)
    result = export_checkpoint(tmp_path / "pretrain.pth", "timm", tmp_path / "r18.safetensors")
    assert result.report.ok
    overlay = dict(file=str(tmp_path / "r18.safetensors"))
    model = timm.create_model("resnet18", pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay)
    assert all(torch.equal(value, weights[key]) for key, value in model.state_dict().items())
    again = read_encoder_weights(tmp_path / "r18.safetensors")  # the metadata names backbone and size
    assert (again.backbone, again.input_size) == ("resnet18", 64)
    assert again.state_dict.keys() == model.state_dict().keys()
