"""Issue #7 reliability cases: mixed precision on every path, unknown config keys, another backbone's checkpoint."""

import subprocess
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import hiermae
from hiermae.checkpoints.runner import check_checkpoint_fits, check_run_checkpoint
from hiermae.downstream.checkpoints import CheckpointError
from hiermae.engine.amp import AutocastOptimWrapper
from hiermae.engine.config_check import UnknownConfigKeyError, check_config_keys
from hiermae.engine.training import build_config

from small_training import CONFIG, ROOT, small_options, train_command

FAMILIES = ["resnet18", "convnext_atto", "swin_tiny_patch4_window7_224", "vit_tiny_patch16_224"]


def small_pretrainer(backbone: str, sparse: bool = True, width: int = 32) -> hiermae.MaskedPretrainer:
    torch.manual_seed(0)
    return hiermae.build_pretrainer(backbone, sparse=sparse, input_size=64, decoder={"type": "unet", "width": width})


@pytest.fixture
def one_thread():
    """One intra-op thread: these tiny steps gain nothing from two, and on a busy 2-core machine the OpenMP
    barriers of thousands of small bf16 ops made a 0.4 s step take 2-50 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("backbone", FAMILIES)
def test_a_bf16_autocast_step_trains_every_path(backbone, sparse, one_thread):
    """hiermae's CPU --amp wrapper: the loss is finite, differs from float32's (autocast ran), parameters move."""
    model = small_pretrainer(backbone, sparse)
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))
    images = torch.randn(2, 3, 64, 64)
    visible = model.draw_mask(images, torch.tensor([1, 2]))
    with torch.no_grad():
        full_precision = model(images, visible=visible)["loss"]
    before = [p.detach().clone() for p in model.parameters()]
    with wrapper.optim_context(model):
        loss = model(images, visible=visible)["loss"]
    wrapper.update_params(loss)
    assert torch.isfinite(loss)
    assert loss.item() != full_precision.item() and abs(loss.item() - full_precision.item()) < 0.05
    moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)]
    assert sum(moved) > 0.9 * len(moved)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("train_cfg.max_iter", "IterBasedTrainLoop does not take 'max_iter'; did you mean 'max_iters'"),
        ("model.decodr.width", "'model.decodr': MaskedPretrainer does not take 'decodr'; did you mean 'decoder'"),
        ("model.decoder.widht", "'model.decoder.widht': UNetDecoder does not take 'widht'; did you mean 'width'"),
        ("trian_dataloader.batch_size", "'trian_dataloader' is neither in the config nor read by the runner; "
                                        "did you mean 'train_dataloader'"),
        ("train_dataloader.bach_size", "'train_dataloader.bach_size': DataLoader does not take 'bach_size'; "
                                       "did you mean 'batch_size'"),
        ("optim_wrapper.optimizer.lrr", "'optim_wrapper.optimizer.lrr': AdamW does not take 'lrr'; did you mean 'lr'"),
    ],
)  # fmt: skip
def test_a_misspelt_option_is_named_with_close_matches(option, message):
    with pytest.raises(UnknownConfigKeyError) as error:
        build_config(str(CONFIG), cfg_options={option: 2})
    assert str(error.value).startswith("unknown config key ") and message in str(error.value)


def test_a_misspelt_key_in_a_config_file_is_named(tmp_path):
    config = tmp_path / "typo.py"
    config.write_text(f"_base_ = [{str(CONFIG)!r}]\nmodel = dict(mask=dict(mask_ratoi=0.6))\n")
    with pytest.raises(UnknownConfigKeyError, match="'model.mask.mask_ratoi'.*did you mean 'mask_ratio'"):
        build_config(str(config))


def test_new_keys_that_their_constructor_accepts_still_work():
    cfg = build_config(
        str(CONFIG),
        cfg_options={
            "model.init_cfg.type": "Pretrained",
            "model.init_cfg.checkpoint": "encoder.pth",
            "model.decoder.min_width": 16,
            "sync_bn": "torch",
            "randomness.diff_rank_seed": True,
        },
    )
    assert cfg.model.init_cfg.type == "Pretrained" and cfg.model.decoder.min_width == 16 and cfg.sync_bn == "torch"
    with pytest.raises(UnknownConfigKeyError, match="PretrainedInit does not take 'checkpont'"):
        build_config(str(CONFIG), cfg_options={"model.init_cfg.type": "Pretrained", "model.init_cfg.checkpont": "x"})


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*/*.py")), ids=lambda p: p.stem)
def test_every_shipped_config_passes_the_key_check(config):
    check_config_keys(Config.fromfile(str(config)))


def mmengine_checkpoint(path: Path, model: hiermae.MaskedPretrainer) -> Path:
    """A checkpoint as mmengine writes it: weights and the config text naming the backbone."""
    cfg = Config(dict(model=dict(type="MaskedPretrainer", backbone=model.backbone)))
    torch.save({"meta": {"cfg": cfg.pretty_text}, "state_dict": model.state_dict()}, path)
    return path


def test_a_checkpoint_of_another_backbone_is_refused_with_its_keys(tmp_path):
    path = mmengine_checkpoint(tmp_path / "convnext.pth", small_pretrainer("convnext_atto"))
    model = small_pretrainer("resnet18")
    with pytest.raises(CheckpointError) as error:
        check_checkpoint_fits(model, str(path), {"backbone": "resnet18"})
    message = str(error.value)
    assert "trained with backbone 'convnext_atto', this config uses 'resnet18'" in message
    assert "missing keys [encoder.model.bn1.bias," in message  # ResNet's stem
    assert "unexpected keys [encoder.model.stages.0.blocks.0.conv_dw.bias," in message  # ConvNeXt's blocks
    assert "shape mismatches [decoder.lateral.0.weight: (32, 40, 1, 1) vs model (32, 64, 1, 1)," in message


def test_a_checkpoint_with_other_shapes_is_refused_and_a_fitting_one_passes(tmp_path):
    model = small_pretrainer("resnet18")
    check_checkpoint_fits(model, str(mmengine_checkpoint(tmp_path / "same.pth", small_pretrainer("resnet18"))))
    wider = mmengine_checkpoint(tmp_path / "wider.pth", small_pretrainer("resnet18", width=64))
    with pytest.raises(CheckpointError, match=r"0 missing keys .*0 unexpected keys .*shape mismatches \[decoder"):
        check_checkpoint_fits(model, str(wider))


def test_load_from_is_checked_for_pretraining_only(tmp_path):
    """Downstream configs keep mmengine's partial load_from (a detector fine-tuned from weights with another head)."""
    other = mmengine_checkpoint(tmp_path / "convnext.pth", small_pretrainer("convnext_atto"))
    model = small_pretrainer("resnet18")
    pretraining = Config(dict(model=dict(type="MaskedPretrainer", backbone="resnet18"), load_from=str(other)))
    with pytest.raises(CheckpointError):
        check_run_checkpoint(model, pretraining)
    check_run_checkpoint(model, Config(dict(model=dict(type="MaskRCNN"), load_from=str(other))))
    with pytest.raises(CheckpointError):
        check_run_checkpoint(model, Config(dict(model=dict(type="MaskRCNN"), load_from=str(other), resume=True)))


def train(work_dir: Path, *options: str, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    small = small_options(iters=2, images=16, checkpoint_every=2)
    command = train_command(work_dir, *args, options=[*small, *options])
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_resume_or_load_from_another_backbone_stops_before_training(tmp_path):
    first = train(tmp_path / "resnet18")
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = tmp_path / "resnet18" / "iter_2.pth"
    resumed = train(tmp_path / "convnext", "model.backbone=convnext_atto", args=("--resume", str(checkpoint)))
    loaded = train(tmp_path / "convnext", "model.backbone=convnext_atto", f"load_from={checkpoint}")
    for run in (resumed, loaded):
        assert run.returncode != 0
        assert "CheckpointError" in run.stderr and "does not fit this model" in run.stderr
        assert "trained with backbone 'resnet18', this config uses 'convnext_atto'" in run.stderr
        assert "Iter(train)" not in run.stdout + run.stderr
