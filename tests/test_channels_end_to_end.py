"""Grey (C = 1) and 4-band (C = 4) images end to end through the tools, on small generated folders: pretrain
(tools/train.py), export (tools/export.py, strict-loaded into timm with in_chans=C), reconstruct
(tools/visualize.py: a grey grid is grey) and fine-tune (tools/finetune.py, also across channel counts)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import timm
import torch
from mmengine.config import Config
from PIL import Image

from hiermae.backbones import encoder_family
from hiermae.checkpoints import CheckpointError
from hiermae.downstream.checkpoints import read_encoder_weights
from hiermae.downstream.export import export_checkpoint, export_mm, mm_target
from hiermae.downstream.pretrained import load_backbone
from hiermae.engine.visualization import CAPTION_HEIGHT, band_caption, save_reconstruction_grid

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
RECIPES = {  # each family's pretraining recipe
    "resnet18": "hiermae_resnet18_96px_fashionmnist.py",
    "convnext_atto": "hiermae_convnext_atto_96px_fashionmnist.py",
    "swin_tiny_patch4_window7_224": "hiermae_swin_tiny_96px_fashionmnist.py",
    "vit_tiny_patch16_224": "mae_vit_tiny_96px_fashionmnist.py",
    "mobilenetv3_large_100": "hiermae_mobilenetv3_large_100_96px_fashionmnist.py",
}
FAST = "resnet18"


def make_grey_folder(root: Path) -> Path:
    """Two classes of 64×64 grey PNGs, 8-bit and 16-bit, with a different pattern per class."""
    rng = np.random.default_rng(0)
    for label in range(2):
        (root / f"class{label}").mkdir(parents=True)
        for index in range(4):
            base = np.linspace(0, 1, SIZE)[None, :] if label else np.linspace(0, 1, SIZE)[:, None]
            values = np.clip(base + rng.normal(0, 0.05, (SIZE, SIZE)), 0, 1)
            if index % 2:
                Image.fromarray((values * 65535).astype(np.uint16)).save(root / f"class{label}/{index}.png")
            else:
                Image.fromarray((values * 255).astype(np.uint8), "L").save(root / f"class{label}/{index}.png")
    return root


def make_band_folder(root: Path, bands: int = 4) -> Path:
    """Two classes of 64×64 uint16 TIFFs of `bands` bands."""
    rng = np.random.default_rng(1)
    for label in range(2):
        (root / f"class{label}").mkdir(parents=True)
        for index in range(4):
            values = rng.integers(0, 20000 + 40000 * label, (SIZE, SIZE, bands)).astype(np.uint16)
            tifffile.imwrite(root / f"class{label}/{index}.tif", values)
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("channels")
    return {1: make_grey_folder(root / "grey"), 4: make_band_folder(root / "bands")}


def run_tool(tool: str, *args: str) -> str:
    """Run tools/`tool` in a subprocess; its output, after asserting it succeeded."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / tool), *map(str, args)], capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"{tool} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def pretraining_config(tmp_path: Path, backbone: str, folder: Path, channels: int) -> Path:
    """The family's recipe, on `folder` read with `channels` channels at 64 px, for two iterations."""
    stats = f"[114.5] * {channels}, std=[57.6] * {channels}"
    path = tmp_path / f"{backbone}_{channels}.py"
    path.write_text(
        f'_base_ = ["{ROOT / "configs/pretrain" / RECIPES[backbone]}"]\n'
        "train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False, dataset=dict(_delete_=True,"
        f' type="ImageFolder", root="{folder}", image_size={SIZE}, channels={channels}))\n'
        f"model = dict(input_size={SIZE}, in_chans={channels}, data_preprocessor=dict(mean={stats}))\n"
        "train_cfg = dict(max_iters=2)\n"
        "default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))\n"
    )
    return path


def pretrain_export_reconstruct_finetune(tmp_path: Path, backbone: str, folder: Path, channels: int) -> None:
    work = tmp_path / "pretrain"
    run_tool("train.py", pretraining_config(tmp_path, backbone, folder, channels), "--work-dir", work)
    checkpoint = work / "iter_2.pth"
    export = tmp_path / "export.pth"
    run_tool("export.py", checkpoint, "--format", "timm", "--out", export)
    stored = torch.load(export, weights_only=True)
    assert stored["meta"]["in_chans"] == channels
    model = encoder_family(backbone).create_timm_model(backbone, SIZE, num_classes=0, in_chans=channels)
    loaded = model.load_state_dict(stored["state_dict"], strict=False)  # all but the head, which is not exported
    assert not loaded.unexpected_keys and all(encoder_family(backbone).is_head_key(k) for k in loaded.missing_keys)
    grid = tmp_path / "grid.png"
    run_tool("visualize.py", checkpoint, "--out", grid, "--image-folder", folder, "--images", 2)
    pixels = np.asarray(Image.open(grid).convert("RGB"))
    if channels == 1:
        assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    output = run_tool(
        "finetune.py", export, "--data", folder, "--epochs", 1, "--warmup-epochs", 0, "--batch-size", 4,
        "--work-dir", tmp_path / "finetune", "--no-amp",
    )  # fmt: skip
    assert "top-1 fine-tune" in output and "adapted" not in output


def test_a_grey_folder_pretrains_exports_reconstructs_grey_and_finetunes(tmp_path, folders) -> None:
    pretrain_export_reconstruct_finetune(tmp_path, FAST, folders[1], 1)


@pytest.mark.slow
@pytest.mark.parametrize("channels", [1, 4])
@pytest.mark.parametrize("backbone", list(RECIPES))
def test_every_family_pretrains_exports_and_finetunes_with_c_channels(tmp_path, folders, backbone, channels) -> None:
    pretrain_export_reconstruct_finetune(tmp_path, backbone, folders[channels], channels)


def test_an_rgb_export_finetunes_on_four_band_tiles_with_its_stem_adapted(tmp_path, folders) -> None:
    """The 3 → 4 stem and a 4-channel classifier through tools/finetune.py (3 → 1: the stem test below)."""
    model = timm.create_model(FAST, pretrained=False, num_classes=0)
    export = tmp_path / "rgb.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"backbone": FAST, "input_size": SIZE}}, export)
    output = run_tool(
        "finetune.py", export, "--data", folders[4], "--in-chans", 4, "--epochs", 1, "--warmup-epochs", 0,
        "--batch-size", 4, "--work-dir", tmp_path / "finetune", "--no-amp",
    )  # fmt: skip
    assert "adapted conv1.weight from 3 to 4 input channels" in output and "top-1 fine-tune" in output


def test_the_shipped_channel_configs_agree_with_themselves() -> None:
    for name, channels in [
        ("hiermae_resnet50_224px_grey_imagefolder.py", 1),
        ("hiermae_resnet50_224px_4band_imagefolder.py", 4),
        ("hiermae_convnext_atto_96px_grey_fashionmnist.py", 1),
    ]:
        cfg = Config.fromfile(ROOT / "configs/pretrain" / name)
        preprocessor = cfg.model.data_preprocessor
        assert cfg.train_dataloader.dataset.channels == channels == cfg.model.in_chans, name
        assert len(preprocessor.mean) == len(preprocessor.std) == channels, name


@pytest.mark.parametrize(("source", "target"), [(3, 1), (1, 3), (1, 4), (4, 1)])
def test_a_stem_fitted_to_other_channels_answers_equal_channel_images_as_before(tmp_path, source, target) -> None:
    torch.manual_seed(0)
    model = timm.create_model(FAST, pretrained=False, num_classes=0, in_chans=source).eval()
    path = tmp_path / "export.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"backbone": FAST, "input_size": SIZE}}, path)
    loaded = load_backbone(path, in_chans=target)
    assert loaded.in_chans == target and len(loaded.report.adapted) == 1
    assert f"adapted conv1.weight from {source} to {target} input channels" in "\n".join(loaded.report.lines())
    grey = torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():
        expected = model(grey.expand(-1, source, -1, -1))
        torch.testing.assert_close(loaded.model.eval()(grey.expand(-1, target, -1, -1)), expected)
    assert load_backbone(path).report.adapted == []  # the checkpoint's own count: nothing to adapt


@pytest.mark.parametrize("backbone", ["resnet18", "convnext_atto", "swin_tiny_patch4_window7_224"])
def test_a_four_channel_export_loads_into_mmdet_and_mmseg_backbones_with_in_channels(tmp_path, backbone) -> None:
    pytest.importorskip("mmdet")
    model = timm.create_model(backbone, pretrained=False, num_classes=0, in_chans=4)
    source = tmp_path / "source.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"backbone": backbone, "input_size": SIZE}}, source)
    for fmt in ("mmdet", "mmseg"):
        result = export_checkpoint(source, fmt, tmp_path / f"{fmt}.pth")
        assert result.report.ok and torch.load(tmp_path / f"{fmt}.pth", weights_only=True)["meta"]["in_chans"] == 4
    stated_rgb = {**mm_target(backbone).config, "in_channels": 3}
    with pytest.raises(CheckpointError, match="in_channels=3, but the checkpoint's stem reads 4 channels"):
        export_mm(read_encoder_weights(source), tmp_path / "x.pth", "mmdet", stated_rgb)


def test_grids_show_grey_as_grey_and_other_counts_as_a_captioned_band_triple(tmp_path) -> None:
    visible = torch.tensor([[[True, False], [False, True]]])
    grey = save_reconstruction_grid(tmp_path / "grey.png", torch.rand(1, 1, SIZE, SIZE), torch.rand(1, 1, SIZE, SIZE),
                                    visible, 32)  # fmt: skip
    pixels = np.asarray(Image.open(grey).convert("RGB"))
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all()
    images = torch.zeros(1, 4, SIZE, SIZE)
    images[:, 3] = 1.0  # only band 3 is lit
    bands = save_reconstruction_grid(tmp_path / "bands.png", images, images, visible, 32, bands=(3, 2, 1))
    pixels = np.asarray(Image.open(bands).convert("RGB"))
    assert pixels.shape[0] == 4 + SIZE + CAPTION_HEIGHT  # the caption strip above one row of four views
    original = pixels[CAPTION_HEIGHT + 2 : CAPTION_HEIGHT + 2 + SIZE, 2 : 2 + SIZE]
    assert (original[..., 0] == 255).all() and (original[..., 1:] == 0).all()  # band 3 shown as red
    assert band_caption(4, (3, 2, 1)) == "bands 3,2,1 as RGB (of 0-3)"
    with pytest.raises(ValueError, match="three channel numbers in 0..3"):
        save_reconstruction_grid(tmp_path / "x.png", images, images, visible, 32, bands=(4, 2, 1))
