"""ConvNeXt and ConvNeXt-V2 encoders: sparse vs the masked-dense reference, masked pixels, timm equality."""

import pytest
import timm
import torch

from hiermae.backbones.build import build_encoder

from equivalence import (
    compare_encoders,
    masked_pixel_sensitivity,
    paired_encoders,
    visible_units,
)

SIZE, BATCH, TOLERANCE = 64, 2, 1e-4
RATIOS = [0.0, 0.6, 0.75, 0.9]


def images_for(seed: int, size: int = SIZE) -> torch.Tensor:
    return torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(seed))


CASES = [(name, ratio, train) for name in ("convnext_atto", "convnextv2_atto") for ratio in RATIOS
         for train in (True, False)]


@pytest.mark.parametrize(
    "name, ratio, train",
    [case if case[2] or case[1] == 0.75 else pytest.param(*case, marks=pytest.mark.slow) for case in CASES],
)
def test_sparse_matches_dense_reference(name, ratio, train):
    """float32, forward and backward (ConvNeXt has no BatchNorm: train and eval differ only in the flag, so the
    eval cases other than 0.75 run with the slow tests)."""
    sparse, dense = paired_encoders(name, SIZE)
    sparse.train(train)
    dense.train(train)
    visible = visible_units(BATCH, (SIZE // 32, SIZE // 32), ratio)
    errors = compare_encoders(sparse, dense, images_for(0), visible)
    assert max(errors.values()) <= TOLERANCE, errors


@pytest.mark.parametrize("sparse", [True, False])
def test_pixels_inside_masked_units_change_nothing(sparse):
    encoder = build_encoder("convnextv2_atto", sparse=sparse, input_size=SIZE).train()
    assert masked_pixel_sensitivity(encoder, images_for(1), visible_units(BATCH, (2, 2), 0.6)) <= 1e-6


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto"])
def test_nothing_masked_equals_timm_features_only(name):
    encoder = build_encoder(name, sparse=True, input_size=64).eval()
    sparse_reference, _ = paired_encoders(name, 64, seed=3)
    encoder.load_state_dict(sparse_reference.state_dict())
    timm_model = timm.create_model(name, features_only=True).eval()
    timm_model.load_state_dict(features_only_names(encoder.timm_state_dict()))
    images = images_for(2, 64)
    with torch.no_grad():
        expected = timm_model(images)
        outputs = encoder(images, torch.ones(BATCH, 2, 2, dtype=torch.bool))
    assert [o.shape[1] for o in outputs] == encoder.out_channels
    for output, reference in zip(outputs, expected):
        assert (output - reference).abs().max() <= TOLERANCE * reference.abs().max()


def features_only_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's features_only wrapper flattens the top-level sequentials: `stem.0` -> `stem_0`, `stages.1` -> ..."""
    return {key.replace("stem.", "stem_", 1).replace("stages.", "stages_", 1): value for key, value in state.items()}


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [0.0, 0.75])
def test_convnext_tiny_matches_dense_reference(ratio):
    sparse, dense = paired_encoders("convnext_tiny", 64)
    visible = visible_units(BATCH, (2, 2), ratio)
    errors = compare_encoders(sparse.train(), dense.train(), images_for(0, 64), visible)
    assert max(errors.values()) <= TOLERANCE, errors


def test_default_is_sparse_weights_are_timm_and_one_unit_is_enough():
    encoder = build_encoder("convnext_pico")
    assert encoder.sparse and encoder.out_strides == [4, 8, 16, 32]
    timm_keys = {k for k in timm.create_model("convnext_pico").state_dict() if not k.startswith("head.")}
    assert encoder.timm_state_dict().keys() == timm_keys
    outputs = encoder(torch.randn(1, 3, 32, 32), torch.ones(1, 1, 1, dtype=torch.bool))
    assert [tuple(o.shape[-2:]) for o in outputs] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    with pytest.raises(ValueError, match="divisible"):
        encoder(torch.randn(1, 3, 48, 48), torch.ones(1, 1, 1, dtype=torch.bool))


def test_bf16_autocast_runs_forward_and_backward():
    sparse, _ = paired_encoders("convnextv2_atto", 64)
    visible = visible_units(BATCH, (2, 2), 0.75)
    images = images_for(4, 64)
    reference = sparse(images, visible)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = sparse(images.requires_grad_(True), visible)
    sum(o.float().sum() for o in outputs).backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    for output, expected in zip(outputs, reference):
        assert (output.float() - expected).abs().max() <= 0.1 * expected.abs().max()


def test_unsupported_name_lists_families():
    with pytest.raises(ValueError, match="convnext"):
        build_encoder("convnext_nano_ols")
