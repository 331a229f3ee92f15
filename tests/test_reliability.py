"""Issue #7 reliability cases: mixed precision on every path, unknown config keys, another backbone's checkpoint;
issue 20: shard sets smaller than the reconstruction grid, used work dirs, changed settings on resume, SIGTERM."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import get_priority
from PIL import Image

import hiermae
from hiermae.checkpoints.literal_config import plain_data
from hiermae.checkpoints.resume import NothingToResumeError, ResumeFallbackWarning, checkpoint_to_resume
from hiermae.checkpoints.runner import (
    ChangedSettingsError,
    check_checkpoint_fits,
    check_resume_settings,
    check_run_checkpoint,
)
from hiermae.checkpoints.settings import SETTINGS_KEY, run_settings
from hiermae.data.shards import ImageShards, pack_folder
from hiermae.downstream.checkpoints import CheckpointError
from hiermae.engine.amp import AutocastOptimWrapper
from hiermae.engine.config_check import UnknownConfigKeyError, check_config_keys
from hiermae.engine.hooks import ReconstructionHook, TrainingSummaryHook, first_items
from hiermae.engine.training import WorkDirInUseError, build_config, claim_work_dir, new_run_folder

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


def test_new_keys_that_their_constructor_accepts_still_work(tmp_path):
    cfg = build_config(
        str(CONFIG),
        work_dir=str(tmp_path),
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


# Issue 20: runs and checkpoints — shard sets smaller than the grid, used work dirs, changed settings, SIGTERM.


def image_folder(root: Path, count: int) -> Path:
    for index in range(count):
        (root / "class").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (70, 70), (40 * index, 90, 200)).save(root / "class" / f"{index}.png")
    return root


def test_the_first_items_of_a_shard_set_smaller_than_the_grid_are_all_of_it(tmp_path):
    pack_folder(image_folder(tmp_path / "images", 5), tmp_path / "shards", samples_per_shard=2)
    shards = ImageShards(str(tmp_path / "shards"), image_size=64)
    items = first_items(shards, 6)  # the reconstruction grid's default
    assert [item["data_samples"]["index"] for item in items] == [0, 1, 2, 3, 4]
    assert len(first_items(shards, 3)) == 3


def test_checkpoints_are_saved_before_the_grids_and_the_summary_comes_last():
    order = [get_priority(p) for p in ("VERY_LOW", ReconstructionHook.priority, TrainingSummaryHook.priority)]
    assert order == sorted(order) and len(set(order)) == 3  # checkpoint hook < grids < summary


@pytest.mark.slow
def test_a_shard_set_of_five_images_trains_saves_and_draws_its_grid(tmp_path):
    """Before: `IndexError: index 5 is out of range for 5 samples` at the first grid, before the first save."""
    root = tmp_path / "shards"
    pack_folder(image_folder(tmp_path / "images", 5), root, samples_per_shard=2)
    options = [
        "model.backbone=resnet18", "model.input_size=64", "model.decoder.width=32", "warmup_iters=2",
        "train_dataloader.dataset.image_size=64", f"train_dataloader.dataset.root={root}",
        "train_dataloader.batch_size=4", "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
        "train_cfg.max_iters=2", "default_hooks.checkpoint.interval=2", "custom_hooks.0.interval=2",
    ]  # fmt: skip
    config = ROOT / "configs/pretrain/hiermae_resnet50_224px_shards.py"
    command = [sys.executable, str(ROOT / "tools/train.py"), str(config), "--work-dir", str(tmp_path / "work")]
    result = subprocess.run([*command, "--cfg-options", *options], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "work" / "iter_2.pth").is_file()
    assert (tmp_path / "work" / "reconstructions" / "iter_2.png").is_file()


def tiny_checkpoint(path: Path, settings: dict | None = None, **meta: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**meta, **({SETTINGS_KEY: settings} if settings is not None else {})}
    torch.save({"meta": meta, "state_dict": {"w": torch.ones(4)}}, path)
    return path


def test_a_new_run_into_a_used_work_dir_is_refused_and_a_continuation_is_not(tmp_path):
    work_dir, other = tmp_path / "run", tiny_checkpoint(tmp_path / "other" / "iter_8.pth")
    tiny_checkpoint(work_dir / "iter_2.pth")
    for choice in ({}, {"cfg_options": {"load_from": str(other)}}, {"resume": str(other)}):
        cfg = build_config(str(CONFIG), work_dir=str(work_dir), **choice)
        with pytest.raises(WorkDirInUseError, match=r"holds the checkpoints of another run \(iter_2\.pth\), which"):
            claim_work_dir(cfg)
    for resume in ("auto", str(work_dir / "iter_2.pth")):
        assert claim_work_dir(build_config(str(CONFIG), work_dir=str(work_dir), resume=resume)) == []
    assert claim_work_dir(build_config(str(CONFIG), work_dir=str(tmp_path / "new"))) == []


def test_the_default_work_dir_is_new_for_each_run_and_resume_finds_the_newest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = Path(build_config(str(CONFIG)).work_dir)
    assert first.parent == Path("work_dirs") / CONFIG.stem
    tiny_checkpoint(first / "iter_2.pth")
    second = Path(build_config(str(CONFIG)).work_dir)
    assert second != first and second.parent == first.parent
    assert Path(build_config(str(CONFIG), resume="auto").work_dir) == first
    taken = new_run_folder(tmp_path / "evaluate")  # tools/evaluate.py's default work dir, created when chosen
    assert taken.is_dir() and new_run_folder(tmp_path / "evaluate") not in (taken, None)
    with pytest.raises(ValueError, match="--launcher pytorch: pass --work-dir"):
        build_config(str(CONFIG), launcher="pytorch")
    with pytest.raises(NothingToResumeError, match="no run of .* holds a checkpoint"):
        build_config(str(ROOT / "configs/pretrain/hiermae_swin_tiny_64px_fashionmnist.py"), resume="auto")


def test_a_resume_under_other_model_or_data_settings_is_refused_unless_overridden(tmp_path):
    cfg = build_config(str(CONFIG), work_dir=str(tmp_path))
    path = str(tiny_checkpoint(tmp_path / "iter_2.pth", run_settings(cfg)))
    assert check_resume_settings(build_config(str(CONFIG), work_dir=str(tmp_path / "b"), compile=True), path) == []
    changed = build_config(str(ROOT / "configs/pretrain/hiermae_resnet18_96px_fashionmnist.py"),
                           cfg_options={"model.mask.mask_ratio": 0.6}, work_dir=str(tmp_path))  # fmt: skip
    expected = ["model.input_size: 64 → 96", "model.mask.mask_ratio: 0.75 → 0.6",
                "train_dataloader.dataset.image_size: 64 → 96"]  # fmt: skip
    with pytest.raises(ChangedSettingsError) as error:
        check_resume_settings(changed, path)
    assert all(change in str(error.value) for change in expected) and "--resume-anyway" in str(error.value)
    assert all(any(change in line for line in check_resume_settings(changed, path, allow_changes=True))
               for change in expected)  # fmt: skip
    older = str(tiny_checkpoint(tmp_path / "iter_4.pth", model_cfg=plain_data(cfg.model)))  # before run_settings
    with pytest.raises(ChangedSettingsError, match=r"model\.input_size: 64 → 96"):  # model settings only
        check_resume_settings(changed, older)


def test_stale_partial_saves_are_removed_and_nothing_else(tmp_path):
    names = [".iter_4.pth.k2m9x0_a.partial", ".last_checkpoint.abcdefgh.partial", ".notes.txt.abcdefgh.partial",
             ".iter_4.pth.partial", "iter_2.pth", "x.partial"]  # fmt: skip
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = claim_work_dir(build_config(str(CONFIG), work_dir=str(tmp_path), resume=str(tmp_path / "iter_2.pth")))
    assert sorted(path.name for path in removed) == sorted(names[:2])
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names[2:])


def test_a_binary_pointer_falls_back_to_the_newest_checkpoint_with_a_warning(tmp_path):
    tiny_checkpoint(tmp_path / "iter_2.pth")
    (tmp_path / "last_checkpoint").write_bytes(b"\xff\xfe\x00iter_9.pth")
    with pytest.warns(ResumeFallbackWarning, match="does not exist"):
        assert checkpoint_to_resume(tmp_path) == tmp_path / "iter_2.pth"


@pytest.mark.slow
def test_train_refuses_a_used_work_dir_and_a_resume_under_changed_settings(tmp_path):
    first = train(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = (tmp_path / "iter_2.pth").read_bytes()
    again = train(tmp_path)
    assert again.returncode != 0 and "WorkDirInUseError: work dir" in again.stderr
    assert (tmp_path / "iter_2.pth").read_bytes() == before
    config = str(ROOT / "configs/pretrain/hiermae_resnet18_96px_fashionmnist.py")
    options = [*small_options(iters=3, images=16, checkpoint_every=2), "model.mask.mask_ratio=0.6"]
    command = [sys.executable, str(ROOT / "tools/train.py"), config, "--work-dir", str(tmp_path), "--resume"]
    changed = subprocess.run([*command, "--cfg-options", *options], cwd=ROOT, capture_output=True, text=True)
    assert changed.returncode != 0 and "ChangedSettingsError: --resume:" in changed.stderr
    assert "model.mask.mask_ratio: 0.75 → 0.6" in changed.stderr and "Iter(train)" not in changed.stdout
    anyway = subprocess.run([*command, "--resume-anyway", "--cfg-options", *options], cwd=ROOT, capture_output=True,
                            text=True)  # fmt: skip
    assert anyway.returncode == 0, anyway.stderr[-3000:]
    assert "resuming under changed settings" in anyway.stdout + anyway.stderr


@pytest.mark.slow
def test_sigterm_during_a_save_leaves_no_partial_file(tmp_path):
    """SIGTERM as soon as the first checkpoint's temporary file appears (it used to stay: 14 MB here, 63 MB in the
    issue); the process still ends by SIGTERM."""
    options = small_options(iters=50, images=16, checkpoint_every=1)
    process = subprocess.Popen(train_command(tmp_path, options=options), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and not list(tmp_path.glob(".iter_*.partial")):
        time.sleep(0.002)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGTERM, output[-3000:]
    assert "stopped by SIGTERM" in output and not list(tmp_path.glob(".*.partial"))
