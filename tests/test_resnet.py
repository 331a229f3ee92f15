"""ResNet encoders: sparse vs the masked-dense reference, masked-pixel invariance, and timm equality."""

import pytest
import timm
import torch

from hiermae.backbones.build import build_encoder

from equivalence import (
    compare_encoders,
    masked_pixel_sensitivity,
    paired_encoders,
    relative_error,
    visible_units,
)

SIZE, BATCH, TOLERANCE = 96, 2, 1e-4
RATIOS = [0.0, 0.6, 0.75, 0.9]


def images_for(seed: int, size: int = SIZE) -> torch.Tensor:
    return torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(seed))


CASES = [(name, ratio, train) for name in ("resnet18", "resnet50") for ratio in RATIOS for train in (True, False)]
FAST = {("resnet18", 0.0, True), ("resnet18", 0.75, True), ("resnet18", 0.6, False), ("resnet50", 0.75, False)}


@pytest.mark.parametrize(
    "name, ratio, train",
    [case if case in FAST else pytest.param(*case, marks=pytest.mark.slow) for case in CASES],
)
def test_sparse_matches_dense_reference(name, ratio, train):
    """Forward and backward in float64. In float32 the dense reference's own gradients differ from float64 by
    up to 1e-2 (eval: activations grow through random BatchNorm statistics) or 1e-1 (train: BatchNorm over the
    few sites of a small test image) for some random weight draws: ill-conditioning that would hide the
    comparison. The float32 forward is checked below."""
    sparse, dense = paired_encoders(name, SIZE)
    sparse, dense = sparse.double().train(train), dense.double().train(train)
    visible = visible_units(BATCH, (SIZE // 32, SIZE // 32), ratio)
    errors = compare_encoders(sparse, dense, images_for(0).double(), visible)
    assert max(errors.values()) <= TOLERANCE, errors


@pytest.mark.parametrize("name, ratio", [("resnet18", 0.6), ("resnet50", 0.75)])
def test_float32_forward_matches_dense_reference(name, ratio):
    sparse, dense = paired_encoders(name, SIZE)
    visible = visible_units(BATCH, (SIZE // 32, SIZE // 32), ratio)
    images = images_for(0)
    with torch.no_grad():
        for train in (True, False):
            pairs = zip(sparse.train(train)(images, visible), dense.train(train)(images, visible))
            assert max(relative_error(s, d) for s, d in pairs) <= TOLERANCE


@pytest.mark.parametrize("sparse", [True, False])
def test_pixels_inside_masked_units_change_nothing(sparse):
    encoder = build_encoder("resnet18", sparse=sparse, input_size=SIZE).train()
    assert masked_pixel_sensitivity(encoder, images_for(1), visible_units(BATCH, (3, 3), 0.6)) <= 1e-6


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_nothing_masked_equals_timm_features_only(name):
    encoder = build_encoder(name, sparse=True, input_size=64).eval()
    sparse_reference, _ = paired_encoders(name, 64, seed=3)
    encoder.load_state_dict(sparse_reference.state_dict())
    timm_model = timm.create_model(name, features_only=True, out_indices=(1, 2, 3, 4)).eval()
    timm_model.load_state_dict(encoder.timm_state_dict())
    images = images_for(2, 64)
    with torch.no_grad():
        expected = timm_model(images)
        outputs = encoder(images, torch.ones(BATCH, 2, 2, dtype=torch.bool))
    assert [o.shape[1] for o in outputs] == encoder.out_channels
    for output, reference in zip(outputs, expected):
        assert (output - reference).abs().max() <= TOLERANCE * reference.abs().max()


def test_default_is_sparse_weights_are_timm_and_one_unit_is_enough():
    encoder = build_encoder("resnet34").eval()  # train-mode BatchNorm needs 2+ sites; one unit has 1 at stride 32
    assert encoder.sparse and encoder.out_strides == [4, 8, 16, 32]
    assert encoder.timm_state_dict().keys() == timm.create_model("resnet34", num_classes=0).state_dict().keys()
    outputs = encoder(torch.randn(1, 3, 32, 32), torch.ones(1, 1, 1, dtype=torch.bool))
    assert [tuple(o.shape[-2:]) for o in outputs] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    with pytest.raises(ValueError, match="divisible"):
        encoder(torch.randn(1, 3, 48, 48), torch.ones(1, 1, 1, dtype=torch.bool))


def test_bf16_autocast_runs_forward_and_backward():
    """Train mode must run under CPU bf16 autocast; values are compared in eval mode, since train-mode BatchNorm
    over the two stride-32 sites of this small masked batch amplifies bf16 rounding arbitrarily."""
    sparse, _ = paired_encoders("resnet18", 64)
    visible = visible_units(BATCH, (2, 2), 0.75)
    images = images_for(4, 64).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = sparse.train()(images, visible)
    sum(o.float().sum() for o in outputs).backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    with torch.no_grad():
        reference = sparse.eval()(images, visible)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = sparse(images, visible)
    for output, expected in zip(outputs, reference):
        assert (output.float() - expected).abs().max() <= 0.05 * expected.abs().max()


def test_unsupported_name_lists_families():
    with pytest.raises(ValueError, match="resnet"):
        build_encoder("resnet50d")
