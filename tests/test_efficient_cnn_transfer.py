"""The fifth family end to end through the tools: MobileNetV3 pretrained by `tools/train.py` with its recipe config,
exported by `tools/export.py` for timm and mmdet, fine-tuned by `tools/finetune.py` (~10 s)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import timm
import torch
from PIL import Image

from hiermae.checkpoints.safe_load import load_checkpoint_file

from small_training import ROOT

CONFIG = ROOT / "configs/pretrain/hiermae_mobilenetv3_large_100_96px_fashionmnist.py"


def tool(name: str) -> ModuleType:
    """`tools/<name>.py` as a module, run in this process (no second interpreter start-up)."""
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_folder(root: Path, classes: int, count: int) -> None:
    """`classes` class folders of `count` small distinct images each."""
    for label in range(classes):
        (root / f"class{label}").mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (48, 40), (60 * label, 20 * i, 100)).save(root / f"class{label}" / f"{i}.png")


def test_mobilenetv3_pretrains_exports_and_fine_tunes_through_the_tools(tmp_path: Path, capsys) -> None:
    options = [
        "model.input_size=64", "train_dataloader.dataset.image_size=64", "train_dataloader.dataset.limit=64",
        "train_dataloader.batch_size=4", "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
        "model.decoder.width=32", "train_cfg.max_iters=4", "default_hooks.checkpoint.interval=4",
        "default_hooks.logger.interval=1", "custom_hooks.0.interval=100",
    ]  # fmt: skip
    command = [sys.executable, str(ROOT / "tools/train.py"), str(CONFIG), "--work-dir", str(tmp_path / "pretrain")]
    done = subprocess.run([*command, "--cfg-options", *options], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = tmp_path / "pretrain" / "iter_4.pth"

    export = tool("export")
    export.main([str(checkpoint), "--format", "timm", "--out", str(tmp_path / "timm.pth")])
    export.main([str(checkpoint), "--format", "mmdet", "--out", str(tmp_path / "mmdet.pth")])
    out = capsys.readouterr().out
    assert "strict load into timm mobilenetv3_large_100 at 64 px" in out and "0 missing, 0 unexpected" in out
    assert "strict load into mmdet TimmBackbone" in out and "loads every tensor" in out
    pretrained = load_checkpoint_file(checkpoint)["state_dict"]
    exported = torch.load(tmp_path / "timm.pth", weights_only=True)["state_dict"]
    assert exported and all(torch.equal(v, pretrained[f"encoder.model.{k}"]) for k, v in exported.items())
    model = timm.create_model("mobilenetv3_large_100", num_classes=0)
    missing, unexpected = model.load_state_dict(exported, strict=False)
    assert not unexpected and sorted(missing) == ["conv_head.bias", "conv_head.weight"]

    write_folder(tmp_path / "images", classes=2, count=6)
    tool("finetune").main([
        str(tmp_path / "timm.pth"), "--data", str(tmp_path / "images"), "--epochs", "2", "--warmup-epochs", "1",
        "--batch-size", "4", "--work-dir", str(tmp_path / "finetune"), "--json", str(tmp_path / "finetune.json"),
    ])  # fmt: skip
    summary = json.loads((tmp_path / "finetune.json").read_text())
    assert summary["backbone"] == "mobilenetv3_large_100" and summary["input_size"] == 64
    assert [point["epoch"] for point in summary["curve"]] == [1, 2] and 0.0 <= summary["top1"] <= 1.0
    assert "0 missing, 0 unexpected" in capsys.readouterr().out
