"""experiments/diagnose_finetune.py: its variants are what their names say."""

from dataclasses import asdict

import pytest

from experiments.diagnose_finetune import FROZEN, VARIANTS, chosen, recipe
from hiermae.backbones import encoder_family
from hiermae.downstream.finetune import FineTuneRecipe
from hiermae.downstream.layer_decay import layer_decay_groups
from hiermae.downstream.pretrained import load_backbone


def changed_fields(variant: FineTuneRecipe, base: FineTuneRecipe) -> set[str]:
    return {key for key, value in asdict(variant).items() if asdict(base)[key] != value}


def test_each_variant_changes_one_thing_of_the_protocol_it_starts_from() -> None:
    assert changed_fields(chosen(), FineTuneRecipe()) == {"val_interval", "base_lr"}
    # the second diagnosis's protocol: today's, with crops of 35-100 %, drop path 0.1 and a randomly initialised head
    assert changed_fields(VARIANTS["family_lr"][0], FineTuneRecipe()) <= {"val_interval", "crop_scale", "drop_path",
                                                                           "probe_head"}  # fmt: skip
    one_thing = {"crop_scale", "drop_path"}  # "no augmentation" turns off both random crops and drop path
    for name, (variant, _hooks) in VARIANTS.items():
        base = {"chosen": chosen(), "family": VARIANTS["family_lr"][0]}.get(name.split("_")[0], recipe())
        if name.endswith("_probe_head"):  # LP-FT added to another variant
            base = VARIANTS.get(name.removesuffix("_probe_head"), (base,))[0]
        changed = changed_fields(variant, base)
        assert len(changed) <= 1 or changed == one_thing or name == "lr_x10_30_epochs", (name, changed)


FAMILY_EXAMPLES = ["resnet18", "convnext_atto", "swin_tiny_patch4_window7_224", "vit_tiny_patch16_224"]


@pytest.mark.parametrize("backbone", FAMILY_EXAMPLES)
def test_a_frozen_backbone_leaves_only_the_head_and_final_norm_learning(backbone: str) -> None:
    network = load_backbone(None, backbone, 64, num_classes=10).model
    family = encoder_family(backbone)
    top = family.lr_layer_count(network) + 1
    groups = layer_decay_groups(network, backbone, FROZEN, weight_decay=0.05)
    learning = {g["layer_id"] for g in groups if g["lr_scale"] > 1e-4}
    assert learning == {top}
    top_names = [name for name, _ in network.named_parameters() if family.lr_layer_id(network, name) == top]
    assert any(name.startswith(family.head_modules) for name in top_names)
