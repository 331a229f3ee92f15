"""tools/visualize.py: a reconstruction grid rebuilt from a checkpoint's own config and weights."""

import re
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from PIL import Image

import hiermae  # noqa: F401
from hiermae.downstream.checkpoints import CheckpointError
from hiermae.model.pretrainer import MaskedPretrainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from visualize import load_pretrainer, visualize  # noqa: E402

MODEL = dict(
    type="MaskedPretrainer", backbone="resnet18", sparse=True, input_size=64,
    mask=dict(type="random", mask_ratio=0.75), decoder=dict(type="unet", width=32),
    data_preprocessor=dict(type="MIMDataPreprocessor", mean=[72.9] * 3, std=[90.0] * 3),
)  # fmt: skip


def save_checkpoint(path: Path, **changes) -> MaskedPretrainer:
    """A checkpoint in the layout tools/train.py writes: the config text in meta, the pretrainer's weights."""
    cfg = Config(dict(model=dict(MODEL, **changes)))
    torch.manual_seed(0)
    model = MaskedPretrainer(**{k: v for k, v in cfg.model.items() if k != "type"})
    torch.save({"meta": {"cfg": cfg.pretty_text}, "state_dict": model.state_dict()}, path)
    return model


def test_grid_has_a_row_per_image_and_the_saved_weights(tmp_path):
    saved = save_checkpoint(tmp_path / "iter_1.pth")
    loaded = load_pretrainer(tmp_path / "iter_1.pth", mask_ratio=0.5)
    assert loaded.mask_generator.mask_ratio == 0.5 and not loaded.training
    for key, value in saved.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    path = visualize(
        str(tmp_path / "iter_1.pth"), tmp_path / "grid.png", images=3, mask_ratio=None, seed=0, folder=None
    )
    width, height = Image.open(path).size
    assert (width, height) == (4 * (64 + 2) + 2, 3 * (64 + 2) + 2)


def test_bad_checkpoints_and_ratios_are_named(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="stores no training config"):
        load_pretrainer(tmp_path / "bare.pth")
    save_checkpoint(tmp_path / "hog.pth", target=dict(type="hog"))
    with pytest.raises(ValueError, match="open interval"):
        load_pretrainer(tmp_path / "hog.pth", mask_ratio=1.5)
    with pytest.raises(SystemExit, match="no pixel-space prediction"):
        visualize(str(tmp_path / "hog.pth"), tmp_path / "g.png", images=2, mask_ratio=None, seed=0, folder=None)


def test_a_diverged_checkpoint_is_refused_naming_its_tensors(tmp_path):
    save_checkpoint(tmp_path / "iter_1.pth")
    checkpoint = torch.load(tmp_path / "iter_1.pth")
    stem = next(name for name in checkpoint["state_dict"] if name.endswith("conv1.weight"))
    checkpoint["state_dict"][stem][0, 0, 0, 0] = float("nan")
    torch.save(checkpoint, tmp_path / "diverged.pth")
    with pytest.raises(CheckpointError, match=rf"NaN or infinite weights in 1 tensors \[{re.escape(stem)}\]"):
        load_pretrainer(tmp_path / "diverged.pth")


def test_an_interrupted_grid_write_keeps_the_earlier_grid(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "iter_1.pth")
    grid = tmp_path / "grid.png"
    visualize(str(tmp_path / "iter_1.pth"), grid, images=2, mask_ratio=None, seed=0, folder=None)
    earlier = grid.read_bytes()

    def interrupted(image, path, **options):
        Path(path).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr("hiermae.engine.visualization.save_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        visualize(str(tmp_path / "iter_1.pth"), grid, images=2, mask_ratio=0.5, seed=1, folder=None)
    assert grid.read_bytes() == earlier and sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "iter_1.pth"]
