"""Classification evaluation: kNN voting, pooled features, strict loading from exports, runner-based probes."""

import importlib.util
from pathlib import Path

import pytest
import torch

from hiermae.downstream.checkpoints import CheckpointError, backbone_family, create_timm_model
from hiermae.downstream.classification import (
    FeatureDataset,
    FineTuneClassifier,
    LinearProbe,
    LoadedBackbone,
    TopOneAccuracy,
    evaluate,
    knn_accuracy,
    load_backbone,
    pooled_features,
    train_and_test,
)

REPO = Path(__file__).parents[1]


def clusters(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well separated directions in 16-d, with noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=generator)
    centres = torch.eye(16)[:3] * 5
    return centres[labels] + torch.randn(n, 16, generator=generator), labels


def test_knn_separates_clusters_and_not_shuffled_labels() -> None:
    train, train_labels = clusters(300, 0)
    test, test_labels = clusters(100, 1)
    assert knn_accuracy(train, train_labels, test, test_labels) > 0.95
    shuffled = train_labels[torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    assert knn_accuracy(train, shuffled, test, test_labels) < 0.6


def test_top_one_accuracy_metric() -> None:
    metric = TopOneAccuracy()
    metric.process({}, [{"pred": 1, "label": 1}, {"pred": 2, "label": 0}, {"pred": 0, "label": 0}])
    assert metric.compute_metrics(metric.results) == {"top1": pytest.approx(2 / 3)}


def test_linear_probe_trains_through_a_runner(tmp_path: Path) -> None:
    train, train_labels = clusters(300, 0)
    test, test_labels = clusters(100, 1)
    accuracy = train_and_test(
        LinearProbe(16, num_classes=3), FeatureDataset(train, train_labels), FeatureDataset(test, test_labels),
        work_dir=tmp_path, name="probe", epochs=10, batch_size=32, lr=5e-2, weight_decay=0.0,
    )  # fmt: skip
    assert accuracy > 0.95


@pytest.mark.parametrize(
    ("backbone", "channels"), [("resnet18", 512), ("convnext_atto", 320), ("swin_tiny_patch4_window7_224", 768)]
)
def test_pooled_features_average_the_last_stage(backbone: str, channels: int) -> None:
    loaded = load_backbone(None, backbone, 64)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = pooled_features(loaded.model.eval(), backbone_family(backbone), images)
    assert features.shape == (2, channels)


def test_load_backbone_from_timm_export_is_strict(tmp_path: Path) -> None:
    weights = create_timm_model("resnet18", num_classes=0).state_dict()
    torch.save(
        {"state_dict": weights, "meta": {"backbone": "resnet18", "format": "timm", "input_size": 64}},
        tmp_path / "t.pth",
    )
    loaded = load_backbone(tmp_path / "t.pth")
    assert loaded.name == "resnet18" and loaded.input_size == 64 and loaded.report.ok
    assert torch.equal(loaded.model.state_dict()["layer4.1.bn2.weight"], weights["layer4.1.bn2.weight"])
    weights.pop("layer4.1.bn2.weight")
    torch.save({"state_dict": weights, "meta": {"backbone": "resnet18"}}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_backbone(tmp_path / "partial.pth")


def test_evaluate_random_init_with_knn_and_linear_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("evaluate_tool", REPO / "tools" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([
        "--backbone", "resnet18", "--input-size", "64", "--train-limit", "400", "--test-limit", "100",
        "--linear-epochs", "10", "--work-dir", str(tmp_path),
    ])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    scores = {line.split()[1].rstrip(":"): float(line.split()[2]) for line in lines if line.startswith("top-1")}
    assert set(scores) == {"knn", "linear"}
    assert all(0.2 < score <= 1 for score in scores.values())  # 10 classes: chance is 0.1


@pytest.mark.slow
def test_fine_tuning_improves_over_chance(tmp_path: Path) -> None:
    results = evaluate(
        None, backbone="resnet18", input_size=32, protocols=("finetune",), train_limit=1000, test_limit=200,
        work_dir=tmp_path, finetune_epochs=2, batch_size=32,
    )  # fmt: skip
    assert results["finetune"] > 0.3


@pytest.mark.parametrize("backbone", ["resnet18", "vit_tiny_patch16_224", "swin_tiny_patch4_window7_224"])
def test_fine_tuning_starts_from_the_loaded_weights(backbone: str) -> None:
    """mmengine's Runner calls init_weights() on the model before training; timm's own init_weights must not run."""
    loaded = LoadedBackbone(create_timm_model(backbone, 64, num_classes=0), backbone, 64, None)
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter.fill_(0.125)
    classifier = FineTuneClassifier(loaded)
    classifier.init_weights()
    assert all(bool((p == 0.125).all()) for p in classifier.backbone.parameters())
