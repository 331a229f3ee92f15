"""Fine-tuning protocol: per-family layer ids, layer-wise lr decay, labelled subsets, the classifier, the CLI."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from PIL import Image

from hiermae.backbones.build import encoder_family
from hiermae.downstream.checkpoints import create_timm_model
from hiermae.downstream.classification_data import fashion_mnist_data, image_folder_data
from hiermae.downstream.finetune import (
    FineTuneRecipe,
    ImageClassifier,
    finetune,
    runner_config,
)
from hiermae.downstream.labelled_data import (
    LabelledFashionMNIST,
    LabelledImageFolder,
    holdout_indices,
    stratified_indices,
)
from hiermae.downstream.layer_decay import layer_decay_groups, layer_decay_rate
from hiermae.downstream.pretrained import load_backbone

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {
    "resnet18": ("conv1.weight", {"layer3.1.conv2.weight": 3, "layer4.0.downsample.1.bias": 4}, "fc.weight", 4),
    "convnext_atto": (
        "stem.0.weight",
        {"stages.2.blocks.0.conv_dw.weight": 5, "stages.2.downsample.1.weight": 5, "stages.3.blocks.1.gamma": 12},
        "head.norm.weight",
        12,
    ),
    "swin_tiny_patch4_window7_224": (
        "patch_embed.proj.weight",
        {"layers.2.downsample.reduction.weight": 5, "layers.2.blocks.5.attn.qkv.weight": 10},
        "norm.weight",
        12,
    ),
    "vit_tiny_patch16_224": (
        "pos_embed",
        {"blocks.0.norm1.weight": 1, "blocks.11.mlp.fc2.weight": 12},
        "head.weight",
        12,
    ),
    "mobilenetv3_large_100": (
        "conv_stem.weight",
        {"blocks.0.0.conv_dw.weight": 1, "blocks.3.1.bn1.bias": 8, "blocks.6.0.conv.weight": 16},
        "conv_head.weight",
        16,
    ),
    "efficientnet_b0": (
        "bn1.weight",
        {"blocks.1.0.se.conv_reduce.weight": 2, "blocks.5.3.conv_pwl.weight": 15, "blocks.6.0.conv_pw.weight": 16},
        "bn2.weight",
        16,
    ),
}


def classifier(backbone: str) -> torch.nn.Module:
    """The timm classifier fine-tuning builds (the family's classifier options)."""
    return load_backbone(None, backbone, 64, num_classes=10).model


@pytest.mark.parametrize("backbone", list(FAMILIES))
def test_layer_ids_run_from_stem_to_head_in_depth_order(backbone: str) -> None:
    stem, inner, head, count = FAMILIES[backbone]
    network, family = classifier(backbone), encoder_family(backbone)
    assert family.lr_layer_count(network) == count
    ids = [family.lr_layer_id(network, name) for name, _ in network.named_parameters()]
    assert ids == sorted(ids), "ids must not decrease along timm's parameter order (stem first, head last)"
    assert set(ids) == set(range(count + 2)), "every layer from the stem (0) to the head (N + 1) has parameters"
    assert family.lr_layer_id(network, stem) == 0 and family.lr_layer_id(network, head) == count + 1
    assert {name: family.lr_layer_id(network, name) for name in inner} == inner
    with pytest.raises(ValueError, match="no layer-wise lr decay id for parameter 'decoder.weight'"):
        family.lr_layer_id(network, "decoder.weight")


def test_layer_decay_groups_scale_by_depth_and_skip_decay_on_norms_and_tables() -> None:
    network = classifier("vit_tiny_patch16_224")
    groups = layer_decay_groups(network, "vit_tiny_patch16_224", rate=0.5, weight_decay=0.05)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert len(by_id) == len(list(network.parameters()))  # every parameter in exactly one group
    named = dict(network.named_parameters())
    assert by_id[id(named["pos_embed"])]["lr_scale"] == 0.5**13 and by_id[id(named["pos_embed"])]["weight_decay"] == 0
    assert by_id[id(named["blocks.4.attn.qkv.weight"])]["lr_scale"] == 0.5**8
    assert by_id[id(named["blocks.4.attn.qkv.weight"])]["weight_decay"] == 0.05
    assert by_id[id(named["blocks.4.attn.qkv.bias"])]["weight_decay"] == 0.0
    assert by_id[id(named["head.weight"])]["lr_scale"] == 1.0
    with pytest.raises(ValueError, match=r"rate must be in \(0, 1\]"):
        layer_decay_groups(network, "vit_tiny_patch16_224", rate=1.5, weight_decay=0.05)


def test_mmengine_builds_adamw_with_the_layer_decay_constructor() -> None:
    model = ImageClassifier(backbone="resnet18", input_size=32)
    cfg = dict(
        optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05),
        constructor="LayerDecayOptimWrapperConstructor",
        paramwise_cfg=dict(layer_decay_rate=0.5),
    )
    wrapper = build_optim_wrapper(model, cfg)
    lr_of = {id(p): group["lr"] for group in wrapper.optimizer.param_groups for p in group["params"]}
    assert lr_of[id(model.network.fc.weight)] == pytest.approx(1e-3)
    assert lr_of[id(model.network.conv1.weight)] == pytest.approx(1e-3 * 0.5**5)
    assert lr_of[id(model.network.layer2[0].conv1.weight)] == pytest.approx(1e-3 * 0.5**3)
    with pytest.raises(ValueError, match="takes only layer_decay_rate"):
        build_optim_wrapper(model, dict(cfg, paramwise_cfg=dict(layer_decay=0.5)))


def test_stratified_subsets_are_balanced_fixed_and_disjoint() -> None:
    labels = [i % 10 for i in range(5000)]
    first = stratified_indices(labels, 1000, seed=0)
    assert first == stratified_indices(labels, 1000, seed=0) != stratified_indices(labels, 1000, seed=1)
    assert np.bincount([labels[i] for i in first]).tolist() == [100] * 10
    other = stratified_indices(labels, 2000, seed=1, exclude=first)
    assert not set(other) & set(first) and len(set(other)) == 2000
    uneven = [0] * 3 + [1] * 50  # class 0 runs out: the rest comes from class 1
    assert sorted(uneven[i] for i in stratified_indices(uneven, 10)) == [0] * 3 + [1] * 7
    with pytest.raises(ValueError, match="cannot draw 60 labelled images from 53"):
        stratified_indices(uneven, 60)
    held = holdout_indices(labels[:100], 0.2)
    assert np.bincount([labels[i] for i in held]).tolist() == [2] * 10


def test_labelled_fashion_mnist_low_label_subset() -> None:
    labelled = LabelledFashionMNIST(split="train", image_size=32, subset="labelled", labelled_size=50, limit=2000)
    validation = LabelledFashionMNIST(
        split="train", image_size=32, subset="validation", labelled_size=50, validation_size=100, limit=2000
    )
    assert len(labelled) == 50 and len(validation) == 100
    assert not set(labelled.indices) & set(validation.indices)
    assert np.bincount([int(labelled.images.labels[i]) for i in labelled.indices]).tolist() == [5] * 10
    augmented = LabelledFashionMNIST(split="train", image_size=32, subset="labelled", labelled_size=50, limit=2000,
                                     augment=True, crop_scale=(0.2, 0.3))  # fmt: skip
    plain, crop = labelled[0]["inputs"], augmented[0]["inputs"]
    assert crop.shape == plain.shape == (3, 32, 32) and crop.dtype == torch.uint8 and not torch.equal(crop, plain)
    with pytest.raises(ValueError, match="drawn from the training split"):
        LabelledFashionMNIST(split="test", subset="labelled")


def write_folder(root: Path, classes: dict[str, int], size: tuple[int, int] = (40, 30)) -> None:
    for index, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", size, (40 * index, 5 * i, 100)).save(root / name / f"{i}.png")


def test_labelled_image_folder_splits_and_refuses_unlabelled_folders(tmp_path: Path) -> None:
    write_folder(tmp_path / "pets", {"cat": 10, "dog": 5})
    train = LabelledImageFolder(str(tmp_path / "pets"), image_size=32, part="train", augment=True)
    val = LabelledImageFolder(str(tmp_path / "pets"), image_size=32, part="val", val_fraction=0.2)
    assert len(train) + len(val) == 15 and not set(train.indices) & set(val.indices)
    assert sorted(val[i]["data_samples"]["label"] for i in range(len(val))) == [0, 0, 1]
    assert val[0]["inputs"].shape == (3, 32, 32) and torch.equal(val[0]["inputs"], val[0]["inputs"])
    write_folder(tmp_path / "other", {"cat": 2, "cow": 2})
    with pytest.raises(ValueError, match=r"has classes \['cat', 'cow'\], but .* has \['cat', 'dog'\]"):
        image_folder_data(str(tmp_path / "pets"), (0.5, 1.0), val_root=str(tmp_path / "other"))
    write_folder(tmp_path / "one", {"cat": 3})
    with pytest.raises(ValueError, match="found 1 class sub-folder"):
        LabelledImageFolder(str(tmp_path / "one"))
    Image.new("RGB", (8, 8)).save(tmp_path / "pets" / "loose.png")
    with pytest.raises(ValueError, match="1 images lie directly in the folder"):
        LabelledImageFolder(str(tmp_path / "pets"))


@pytest.mark.parametrize("backbone", ["resnet18", "vit_tiny_patch16_224"])
def test_classifier_starts_from_the_export_and_keeps_it_through_runner_init(tmp_path: Path, backbone: str) -> None:
    weights = {k: v for k, v in create_timm_model(backbone, 64, num_classes=0).state_dict().items()}
    weights = {k: torch.full_like(v, 0.125) if v.is_floating_point() else v for k, v in weights.items()}
    torch.save({"state_dict": weights, "meta": {"backbone": backbone, "format": "timm", "input_size": 64}},
               tmp_path / "export.pth")  # fmt: skip
    model = ImageClassifier(checkpoint=str(tmp_path / "export.pth"), num_classes=3, drop_path_rate=0.1)
    model.init_weights()  # what mmengine's Runner calls: timm's own init must not overwrite the loaded weights
    state = model.network.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items())
    assert model.backbone == backbone and model.input_size == 64 and model.load_report.ok
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 3)


def test_random_init_gets_no_layer_decay_and_pretrained_the_familys() -> None:
    assert layer_decay_rate("swin_tiny_patch4_window7_224", pretrained=True) == 0.9
    assert layer_decay_rate("resnet18", pretrained=False) == 1.0
    assert layer_decay_rate("resnet18", pretrained=False, rate=0.6) == 0.6
    random_init = build_optim_wrapper(ImageClassifier(backbone="resnet18", input_size=32), dict(
        optimizer=dict(type="AdamW", lr=1e-3), constructor="LayerDecayOptimWrapperConstructor"))  # fmt: skip
    assert {group["lr"] for group in random_init.optimizer.param_groups} == {1e-3}
    with pytest.raises(ValueError, match="warmup_epochs < epochs"):
        FineTuneRecipe(epochs=3, warmup_epochs=3)


def test_a_short_finetuning_run_records_its_curve(tmp_path: Path) -> None:
    recipe = FineTuneRecipe(epochs=2, warmup_epochs=1, batch_size=16)
    data = fashion_mnist_data(recipe.crop_scale, labelled=40, train_limit=400, test_limit=48)
    result = finetune(None, data, recipe=recipe, backbone="resnet18", input_size=32, work_dir=tmp_path, seed=1)
    assert [point["epoch"] for point in result.curve] == [1, 2]
    assert result.curve[-1]["lr"] < result.curve[0]["lr"] / 2  # cosine decay after the warm-up epoch
    assert 0.0 <= result.top1 <= 1.0 and result.curve[-1]["top1"] == result.top1
    assert json.loads((tmp_path / "curve.json").read_text()) == result.curve


def test_finetune_config_files_follow_the_recipe() -> None:
    """The mmengine configs in configs/finetune/ restate `FineTuneRecipe`; they must not drift from it."""
    recipe = FineTuneRecipe(amp=False)  # the files train in fp32; `tools/train.py --amp` switches to bf16
    tool = finetune_tool()
    configs = sorted((ROOT / "configs/finetune").glob("*.py"))
    assert configs
    for path in configs:
        cfg = Config.fromfile(path)
        expected = runner_config(recipe, fashion_mnist_data(recipe.crop_scale, labelled=1000),
                                 backbone=cfg.model.backbone, checkpoint=None, input_size=96, work_dir="x")  # fmt: skip
        for key in ("train_cfg", "param_scheduler", "auto_scale_lr", "val_cfg", "custom_hooks"):
            assert cfg[key] == expected[key], (path.name, key)
        assert cfg.optim_wrapper.optimizer == expected.optim_wrapper.optimizer, path.name
        assert cfg.optim_wrapper.type == expected.optim_wrapper.type, path.name
        assert cfg.optim_wrapper.paramwise_cfg == expected.optim_wrapper.paramwise_cfg, path.name
        assert cfg.model.label_smoothing == expected.model.label_smoothing, path.name
        assert cfg.train_dataloader.batch_size == recipe.batch_size, path.name
        source = "folder" if cfg.train_dataloader.dataset.type == "LabelledImageFolder" else tool.FASHION_MNIST
        assert cfg.model.drop_path_rate == tool.DROP_PATH[source], path.name  # the tool's default for the data
        assert tuple(cfg.train_dataloader.dataset.crop_scale) == tool.CROP_SCALE[source], path.name


def finetune_tool():  # noqa: ANN201
    """tools/finetune.py as a module, so the test runs it in this process (no second interpreter start-up)."""
    spec = importlib.util.spec_from_file_location("finetune_tool", ROOT / "tools" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_fine_tunes_a_labelled_folder_and_names_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tool = finetune_tool()
    write_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    tool.main(["--backbone", "resnet18", "--data", str(tmp_path / "pets"), "--input-size", "32", "--epochs", "2",
               "--warmup-epochs", "1", "--batch-size", "4", "--work-dir", str(tmp_path / "run"), "--json",
               str(tmp_path / "result.json")])  # fmt: skip
    out = capsys.readouterr().out
    assert "top-1 fine-tune:" in out and "resnet18 at 32 px, random init (resnet18)" in out
    summary = json.loads((tmp_path / "result.json").read_text())
    assert len(summary["curve"]) == 2 and summary["recipe"]["crop_scale"] == [0.08, 1.0]
    assert summary["recipe"]["drop_path"] == 0.1  # natural photos: the usual drop path (Fashion-MNIST: none)
    assert list((tmp_path / "run").glob("epoch_2.pth"))
    Image.new("RGB", (8, 8)).save(tmp_path / "pets" / "loose.png")
    for args, message in [
        (["--backbone", "resnet18", "--data", str(tmp_path / "pets")], "lie directly in the folder"),
        ([str(tmp_path / "nothing.pth")], "nothing.pth"),
        (["--backbone", "resnet18", "--layer-decay", "0"], "layer_decay must be in (0, 1]"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            tool.main([*args, "--work-dir", str(tmp_path / "bad")])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--labelled selects a Fashion-MNIST subset"):
        tool.main(["--backbone", "resnet18", "--data", str(tmp_path / "pets"), "--labelled", "100"])


@pytest.mark.slow
def test_finetune_config_trains_an_export_through_tools_train(tmp_path: Path) -> None:
    weights = create_timm_model("resnet18", 32, num_classes=0).state_dict()
    torch.save({"state_dict": weights, "meta": {"backbone": "resnet18", "format": "timm", "input_size": 32}},
               tmp_path / "export.pth")  # fmt: skip
    options = [
        f"model.checkpoint={tmp_path / 'export.pth'}", "train_cfg.max_epochs=2", "train_cfg.val_interval=2",
        "train_dataloader.dataset.labelled_size=40", "val_dataloader.dataset.limit=64", "model.input_size=32",
        "train_dataloader.dataset.image_size=32", "val_dataloader.dataset.image_size=32",
    ]  # fmt: skip
    config = ROOT / "configs/finetune/finetune_resnet18_96px_fashionmnist-1k.py"
    command = [sys.executable, "tools/train.py", str(config), "--amp", "--work-dir", str(tmp_path / "run")]
    done = subprocess.run([*command, "--cfg-options", *options], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    curve = json.loads((tmp_path / "run" / "curve.json").read_text())
    assert [point["epoch"] for point in curve] == [1, 2] and 0.0 <= curve[-1]["top1"] <= 1.0
    assert (tmp_path / "run" / "epoch_2.pth").exists()
