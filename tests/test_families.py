"""The family descriptor contract: every registered family declares every field and its declarations agree with
timm and its adapter; a family missing a field fails when defined; a new family registered here reaches export,
probing and fine-tuning with no edit to `downstream/`; and `downstream/` and `tools/` hold no list of families."""

import ast
from pathlib import Path

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from torch import nn

from hiermae.backbones.base import MaskedEncoder
from hiermae.backbones.build import build_encoder, encoder_family
from hiermae.backbones.family import REQUIRED_FIELDS, MMBackbone, numbered, timm_features_backbone, unknown_parameter
from hiermae.downstream.classification import extract_features
from hiermae.downstream.export import export_checkpoint
from hiermae.downstream.finetune import ImageClassifier
from hiermae.downstream.layer_decay import layer_decay_rate
from hiermae.downstream.pretrained import load_backbone
from hiermae.utils.registry import ENCODERS

from checkpoint_files import write_pretraining_checkpoint

REPO = Path(__file__).parents[1]
FAMILIES = list(ENCODERS.module_dict.values())


def example(family: type) -> str:
    """The first timm name a family lists as an example."""
    return family.examples.split(",")[0].strip()


@pytest.mark.parametrize("family", FAMILIES, ids=[f.family for f in FAMILIES])
def test_every_family_declares_a_descriptor_that_agrees_with_timm_and_its_adapter(family: type) -> None:
    name = example(family)
    assert all(getattr(family, field) for field in REQUIRED_FIELDS)
    assert family.supports(name) and encoder_family(name) is family
    assert 0.0 < family.finetune_layer_decay <= 1.0 and family.finetune_base_lr > 0.0
    encoder = build_encoder(name, sparse=False, input_size=64)
    model = family.create_timm_model(name, 64, num_classes=10, **family.classifier_options)
    head = {key for key in model.state_dict() if family.is_head_key(key)}
    assert head, "the classifier of every family has head weights"
    assert encoder.timm_state_dict().keys() == model.state_dict().keys() - head  # the adapter holds no head
    ids = [family.lr_layer_id(model, key) for key, _ in model.named_parameters()]
    assert ids == sorted(ids) and set(ids) == set(range(family.lr_layer_count(model) + 2))
    assert all(family.lr_layer_id(model, key) == family.lr_layer_count(model) + 1 for key in head if "." in key)
    features = family.pooled_features(model.eval(), torch.randn(2, 3, 64, 64))
    assert features.shape == (2, encoder.out_channels[-1])
    target = family.mm_backbone(name)
    assert target is None or (isinstance(target, MMBackbone) and target.config["out_indices"] == (0, 1, 2, 3))


def test_a_family_missing_a_descriptor_field_fails_when_defined() -> None:
    unset = "does not set head_modules, finetune_layer_decay, finetune_base_lr, lr_layer_count"
    with pytest.raises(TypeError, match=unset):

        class Incomplete(MaskedEncoder):  # noqa: F841 - defining it is the test
            family, examples, name_pattern = "incomplete", "incomplete_s", r"incomplete_s"

    with pytest.raises(TypeError, match=r"finetune_layer_decay must be in \(0, 1\], got 1.5"):

        class WrongRate(RegNetX):  # noqa: F841
            finetune_layer_decay = 1.5

    with pytest.raises(TypeError, match="finetune_base_lr must be positive, got -0.001"):

        class WrongLr(RegNetX):  # noqa: F841
            finetune_base_lr = -1e-3


class RegNetX(MaskedEncoder):
    """A sixth family for the tests, declared as a family module would declare it (no masked forward: export,
    probing and fine-tuning read only the descriptor)."""

    family = "regnetx"
    examples = "regnetx_002"
    name_pattern = r"regnetx_00[24]"
    head_modules = ("head",)
    finetune_layer_decay = 0.8
    finetune_base_lr = 1e-2

    def encode(self, images: torch.Tensor, visible: torch.Tensor, plan: object) -> list[torch.Tensor]:
        raise NotImplementedError

    def sparse_planner(self, device_type: str) -> object:
        raise NotImplementedError

    @classmethod
    def lr_layer_count(cls, model: nn.Module) -> int:
        return 4

    @classmethod
    def lr_layer_id(cls, model: nn.Module, name: str) -> int:
        stage = numbered(name, "s")
        if stage is not None:
            return stage
        if name.startswith("stem."):
            return 0
        if cls.is_head_key(name):
            return 5
        raise unknown_parameter(cls.family, name)

    @classmethod
    def mm_backbone(cls, name: str) -> MMBackbone:
        return timm_features_backbone(name)


@pytest.fixture
def sixth_family():  # noqa: ANN201 - RegNetX registered for one test
    ENCODERS.register_module(module=RegNetX)
    yield RegNetX
    ENCODERS.module_dict.pop(RegNetX.__name__)


def test_a_new_family_reaches_export_probing_and_finetuning_without_edits(tmp_path: Path, sixth_family) -> None:
    weights = write_pretraining_checkpoint(tmp_path / "pretrain.pth", "regnetx_002", 64)
    timm_export = export_checkpoint(tmp_path / "pretrain.pth", "timm", tmp_path / "timm.pth")
    assert timm_export.report.ok and timm_export.report.initialised == ["head.fc.bias", "head.fc.weight"]
    for fmt in ("mmdet", "mmseg"):  # through the generic TimmBackbone, strict and through its own init_weights
        mm_export = export_checkpoint(tmp_path / "pretrain.pth", fmt, tmp_path / f"{fmt}.pth")
        assert mm_export.report.ok and not mm_export.report.initialised
    loaded = load_backbone(tmp_path / "timm.pth")
    assert loaded.name == "regnetx_002" and loaded.report.ok
    assert torch.equal(loaded.model.state_dict()["s4.b1.conv2.conv.weight"], weights["s4.b1.conv2.conv.weight"])
    images = [{"inputs": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), "data_samples": {"label": 0}}] * 3
    features, _ = extract_features(loaded, images, dict(mean=[128.0] * 3, std=[64.0] * 3))
    assert features.shape == (3, 368)
    classifier = ImageClassifier(checkpoint=str(tmp_path / "timm.pth"), num_classes=3)
    wrapper = build_optim_wrapper(classifier, dict(optimizer=dict(type="AdamW", lr=1e-3),
                                                   constructor="LayerDecayOptimWrapperConstructor"))  # fmt: skip
    lr_of = {id(p): group["lr"] for group in wrapper.optimizer.param_groups for p in group["params"]}
    assert layer_decay_rate("regnetx_002", pretrained=True) == 0.8
    assert lr_of[id(classifier.network.stem.conv.weight)] == pytest.approx(1e-3 * 0.8**5)
    assert lr_of[id(classifier.network.head.fc.weight)] == pytest.approx(1e-3)


def string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant)
            and isinstance(node.value, str)}  # fmt: skip


@pytest.mark.parametrize("folder", ["downstream", "tools"])
def test_downstream_and_tools_name_no_family(folder: str) -> None:
    """Family knowledge lives on the adapters: no module here switches on a family's name."""
    names = {family.family for family in FAMILIES}
    offenders = {path.name: names & string_constants(path) for path in sorted((REPO / folder).glob("*.py"))}
    assert not {name: found for name, found in offenders.items() if found}
