"""Classification evaluation: kNN voting, pooled features, strict loading from exports, runner-based probes."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from hiermae.backbones.build import encoder_family
from hiermae.downstream.accuracy import TopOneAccuracy
from hiermae.downstream.checkpoints import CheckpointError, create_timm_model
from hiermae.downstream.classification import (
    FeatureDataset,
    LinearProbe,
    evaluate,
    knn_accuracy,
    train_and_test,
)
from hiermae.downstream.finetune import FineTuneRecipe
from hiermae.downstream.pretrained import load_backbone

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
    assert metric.compute_metrics(metric.results) == {"top1": pytest.approx(2 / 3), "scored": 3}


def test_linear_probe_trains_through_a_runner(tmp_path: Path) -> None:
    train, train_labels = clusters(300, 0)
    test, test_labels = clusters(100, 1)
    accuracy = train_and_test(
        LinearProbe(16, num_classes=3), FeatureDataset(train, train_labels), FeatureDataset(test, test_labels),
        work_dir=tmp_path, name="probe", epochs=10, batch_size=32, lr=5e-2, weight_decay=0.0,
    )  # fmt: skip
    assert accuracy > 0.95


@pytest.mark.parametrize(
    ("backbone", "channels"),
    [("resnet18", 512), ("convnext_atto", 320), ("swin_tiny_patch4_window7_224", 768), ("efficientnet_b0", 320)],
)
def test_pooled_features_average_the_last_stage(backbone: str, channels: int) -> None:
    loaded = load_backbone(None, backbone, 64)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = encoder_family(backbone).pooled_features(loaded.model.eval(), images)
        # timm's own last stage map (NCHW), after the final norm where the family has one (Swin)
        last_stage = loaded.model.forward_intermediates(images, indices=1, norm=True, intermediates_only=True)[-1]
    assert features.shape == (2, channels)
    torch.testing.assert_close(features, last_stage.mean(dim=(2, 3)))


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
    with pytest.raises(SystemExit) as stopped:
        module.main(["--backbone", "resnet_unknown", "--work-dir", str(tmp_path)])
    assert stopped.value.code == 2 and "unsupported backbone 'resnet_unknown'" in capsys.readouterr().err


def test_low_label_probe_trains_on_the_fixed_subset(tmp_path: Path) -> None:
    results = evaluate(
        None, backbone="resnet18", input_size=64, protocols=("knn", "linear"), labelled=200, test_limit=200,
        work_dir=tmp_path, linear_epochs=30,
    )  # fmt: skip
    assert set(results) == {"knn", "linear"} and all(0.2 < score <= 1 for score in results.values()), results
    with pytest.raises(ValueError, match="unknown protocols \\['svm'\\]"):
        evaluate(None, backbone="resnet18", protocols=("svm",))


@pytest.mark.slow
def test_fine_tuning_from_random_init_learns_the_low_label_task(tmp_path: Path) -> None:
    recipe = FineTuneRecipe(epochs=15, warmup_epochs=1, batch_size=32)
    results = evaluate(
        None, backbone="resnet18", input_size=32, protocols=("finetune",), labelled=500, test_limit=500,
        work_dir=tmp_path, recipe=recipe,
    )  # fmt: skip
    assert results["finetune"] > 0.4  # chance is 0.1
    curve = json.loads((tmp_path / "finetune" / "curve.json").read_text())
    assert len(curve) == 15 and curve[-1]["loss"] < curve[0]["loss"]
