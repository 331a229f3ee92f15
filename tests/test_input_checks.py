"""Bad input to the public API is a named TypeError / ValueError, the same in every family, and a configuration that
would train on nothing stops when the model is built or at the first batch."""

import subprocess

import pytest
import torch

import hiermae

from small_training import ROOT, small_options, train_command

FAMILIES = ["resnet18", "convnext_atto", "swin_tiny_patch4_window7_224", "vit_tiny_patch16_224"]
IMAGES = torch.zeros(2, 3, 64, 64)
ALL_VISIBLE = torch.ones(2, 2, 2, dtype=torch.bool)
NO_VISIBLE_IN_SAMPLE_1 = torch.tensor([[[True, False], [False, False]], [[False, False], [False, False]]])
# (images, visible, error, message) for a 64-px encoder
BAD_INPUTS = {
    "uint8 images": (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), ALL_VISIBLE, TypeError, "floating-point"),
    "float64 images": (IMAGES.double(), ALL_VISIBLE, TypeError, "weights are torch.float32"),
    "a list": ([[0.0]], ALL_VISIBLE, TypeError, "must be a torch.Tensor"),
    "3-D images": (torch.zeros(3, 64, 64), ALL_VISIBLE, ValueError, "4-D batch .* images.unsqueeze"),
    "empty batch": (torch.zeros(0, 3, 64, 64), ALL_VISIBLE[:0], ValueError, "empty batch"),
    "grey images": (torch.zeros(2, 1, 64, 64), ALL_VISIBLE, ValueError, "3 channels"),
    "size not divisible": (torch.zeros(2, 3, 64, 80), ALL_VISIBLE, ValueError, "not divisible by the mask unit 32"),
    "float visible map": (IMAGES, ALL_VISIBLE.float(), TypeError, "bool tensor"),
    "visible map of another shape": (IMAGES, ALL_VISIBLE[:, :1], ValueError, r"shape \(2, 2, 2\)"),
    "no visible unit": (IMAGES, ~ALL_VISIBLE, ValueError, r"no visible unit in sample\(s\) \[0, 1\]"),
    "a sample without a visible unit": (IMAGES, NO_VISIBLE_IN_SAMPLE_1, ValueError, r"\(s\) \[1\]"),
}


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("backbone", FAMILIES)
def test_every_family_names_the_same_bad_inputs(backbone, sparse):
    encoder = hiermae.build_encoder(backbone, sparse=sparse, input_size=64)
    for case, (images, visible, error, message) in BAD_INPUTS.items():
        with pytest.raises(error, match=message):
            encoder(images, visible)
            pytest.fail(f"{case} was accepted")
    assert len(encoder(torch.zeros(2, 3, 64, 64), NO_VISIBLE_IN_SAMPLE_1 | ALL_VISIBLE)) >= 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(mask_ratio=0.1, input_size=64), r"masks no unit: the loss would be 0.*above 0\.125"),
        (dict(mask_ratio=0.75, input_size=32), "one unit cannot be both masked and visible"),
        (dict(mask={"type": "uniform"}, input_size=96), "even unit grid"),
        (dict(mask={"type": "blockwise", "mask_ratio": 0.1}, input_size=64), "masks no unit"),
    ],
)
def test_a_mask_that_leaves_nothing_to_learn_is_refused_when_the_model_is_built(settings, message):
    with pytest.raises(ValueError, match=message):
        hiermae.build_pretrainer("resnet18", **settings)


def test_images_of_another_size_than_the_model_are_refused_at_the_first_batch():
    model = hiermae.build_pretrainer("resnet18", input_size=96)
    with pytest.raises(ValueError, match=r"images are 64x64 but the model was built for input_size=96"):
        model(torch.zeros(2, 3, 64, 64))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(2, 3, 96, 96, dtype=torch.uint8))
    assert torch.isfinite(model(torch.zeros(2, 3, 96, 96))["loss"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("model.input_size=96", "images are 64x64 but the model was built for input_size=96"),
        ("model.mask.mask_ratio=0.1", "masks no unit"),
    ],
)
def test_train_stops_on_a_degenerate_setting_before_any_iteration(tmp_path, option, message):
    options = [*small_options(iters=2, images=8, checkpoint_every=2), option]
    command = train_command(tmp_path, options=options)
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0 and message in run.stderr, run.stderr[-3000:]
    assert "Iter(train)" not in run.stdout + run.stderr and not list(tmp_path.glob("*.pth"))
