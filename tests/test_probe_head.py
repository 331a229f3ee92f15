"""LP-FT: the fine-tuning head starts as a linear probe of the starting weights, read as training reads them."""

from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.registry import DATASETS
from mmengine.runner import Runner
from torch import nn

from hiermae.downstream.checkpoints import create_timm_model
from hiermae.downstream.classification_data import fashion_mnist_data
from hiermae.downstream.finetune import FineTuneRecipe, ImageClassifier, runner_config
from hiermae.downstream.probe_head import (
    ProbeHeadHook,
    as_in_training,
    fit_linear_probe,
    folded,
    pre_logits_features,
    start_head_from_probe,
)


def test_the_probe_fits_and_folds_into_one_linear_layer() -> None:
    torch.manual_seed(0)
    labels = torch.arange(96) % 4
    centres = torch.randn(4, 8) * 2  # four clusters, then scaled and shifted per dimension as encoders' features are
    features = (centres[labels] + torch.randn(96, 8)) * torch.linspace(0.1, 20.0, 8) + torch.linspace(-5.0, 5.0, 8)
    probe = fit_linear_probe(features, labels, 4, batch_size=32)
    with torch.no_grad():
        assert float((probe(features).argmax(1) == labels).float().mean()) > 0.9
        weight, bias = folded(probe)
        assert torch.allclose(torch.nn.functional.linear(features, weight, bias), probe(features), atol=1e-4)
    again = fit_linear_probe(features, labels, 4, batch_size=32)
    assert all(torch.equal(a, b) for a, b in zip(probe.state_dict().values(), again.state_dict().values(), strict=True))


def test_features_are_read_as_training_reads_them_without_changing_batchnorm_or_modes() -> None:
    network = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.9)).train()
    before = network[1].running_mean.clone(), network[1].running_var.clone()
    inputs = torch.randn(32, 4) * 3 + 1
    with torch.no_grad(), as_in_training(network):
        assert not network[2].training and network[1].training
        read = network(inputs)
    assert torch.allclose(read.mean(0), network[1].bias.detach(), atol=1e-5)  # batch statistics, no dropout
    assert torch.equal(network[1].running_mean, before[0]) and torch.equal(network[1].running_var, before[1])
    assert network[1].momentum == 0.1 and all(module.training for module in network)


@pytest.mark.parametrize("backbone", ["resnet18", "vit_tiny_patch16_224"])
def test_the_head_starts_as_the_probe_of_the_starting_weights(backbone: str) -> None:
    """Afterwards the classifier's final layer gives the probe's logits on the features it reads in training: the
    head is the probe, folded."""
    data = fashion_mnist_data((1.0, 1.0), labelled=40, train_limit=400, test_limit=48)
    model = ImageClassifier(backbone=backbone, input_size=32 if backbone == "resnet18" else 48)
    dataset = DATASETS.build(data.at(model.input_size, augment=False)[0])
    untouched = model.network.get_classifier().weight.clone()
    top1 = start_head_from_probe(model, dataset, batch_size=16, precision=nullcontext, seed=1)
    assert not torch.equal(model.network.get_classifier().weight, untouched)
    features, labels = pre_logits_features(model.network, dataset, model.data_preprocessor, batch_size=16, seed=1)
    probe = fit_linear_probe(features, labels, 10, seed=1)  # seeded: the same probe on the same features
    with torch.no_grad():
        logits = model.network.get_classifier()(features)
        assert torch.allclose(logits, probe(features), atol=1e-4)
    assert top1 == float((logits.argmax(1) == labels).float().mean()) > 0.3  # 40 images, 10 classes: above chance


def test_the_recipe_adds_the_hook(tmp_path: Path) -> None:
    data = fashion_mnist_data((1.0, 1.0), labelled=1000)
    hooks = {
        probe_head: [hook["type"] for hook in runner_config(
            FineTuneRecipe(probe_head=probe_head), data, backbone="resnet18", checkpoint=None, input_size=32,
            work_dir=tmp_path,
        ).custom_hooks]
        for probe_head in (True, False)
    }  # fmt: skip
    assert "ProbeHeadHook" in hooks[True] and "ProbeHeadHook" not in hooks[False]


def export_of_random_weights(backbone: str, path: Path, input_size: int) -> Path:
    """A timm export holding a random initialisation: 'pretrained' weights as far as fine-tuning can tell."""
    weights = create_timm_model(backbone, input_size, num_classes=0).state_dict()
    torch.save({"state_dict": weights, "meta": {"backbone": backbone, "format": "timm", "input_size": input_size}},
               path)  # fmt: skip
    return path


@pytest.mark.parametrize("start", ["export", "random init, as the diagnosis ran it"])
def test_a_short_lp_ft_run_trains_from_the_probe(tmp_path: Path, start: str) -> None:
    recipe = FineTuneRecipe(epochs=2, warmup_epochs=0, base_lr=1e-5, probe_head=True, crop_scale=(1.0, 1.0))
    data = fashion_mnist_data(recipe.crop_scale, labelled=40, train_limit=400, test_limit=64)
    export = None if start != "export" else export_of_random_weights("vit_tiny_patch16_224", tmp_path / "x.pth", 48)
    cfg = runner_config(recipe, data, backbone="vit_tiny_patch16_224", checkpoint=export, input_size=48,
                        work_dir=tmp_path / "run")  # fmt: skip
    if export is None:
        cfg.custom_hooks = [hook for hook in cfg.custom_hooks if hook["type"] != "ProbeHeadHook"]
        cfg.custom_hooks.append(dict(type="ProbeHeadHook", random_init=True))
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.val()["top1"] > 0.2  # 10 classes: the probe's head, not chance, after two epochs at lr 1e-5 × 64/256


def test_random_init_and_a_resumed_run_keep_their_heads(tmp_path: Path) -> None:
    export = export_of_random_weights("resnet18", tmp_path / "export.pth", 32)
    for model, step in [(ImageClassifier(backbone="resnet18", input_size=32), 0),  # random init: a random head
                        (ImageClassifier(checkpoint=str(export), num_classes=10), 16)]:  # resumed  # fmt: skip
        head = model.network.get_classifier().weight.clone()
        ProbeHeadHook().before_train(SimpleNamespace(iter=step, model=model))  # it returns before needing more
        assert torch.equal(model.network.get_classifier().weight, head)
