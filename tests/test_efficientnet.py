"""MobileNetV3 and EfficientNet encoders: sparse vs the masked-dense reference (forward, backward, BatchNorm
statistics), masked pixels, squeeze-excite over visible sites only, timm equality with nothing masked."""

import pytest
import timm
import torch

from hiermae.backbones.build import build_encoder
from hiermae.sparse import FeatureMap, MaskedDenseEngine, SparseEngine
from hiermae.sparse.sites import SitePyramid

from equivalence import compare_encoders, masked_pixel_sensitivity, paired_encoders, visible_units

SIZE, BATCH, TOLERANCE = 96, 2, 1e-4
NAMES = ("mobilenetv3_large_100", "efficientnet_b0")


def images_for(seed: int, size: int = SIZE) -> torch.Tensor:
    return torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(seed))


CASES = [(name, ratio, train) for name in NAMES for ratio in (0.0, 0.6, 0.9) for train in (True, False)]
FAST = {("mobilenetv3_large_100", 0.6, True), ("efficientnet_b0", 0.6, True), ("efficientnet_b0", 0.9, False)}


@pytest.mark.parametrize("name, ratio, train", [c if c in FAST else pytest.param(*c, marks=pytest.mark.slow)
                                                for c in CASES])  # fmt: skip
def test_sparse_matches_dense_reference(name: str, ratio: float, train: bool) -> None:
    """float64 (train-mode BatchNorm over a few sites of a small image is ill-conditioned in float32)."""
    sparse, dense = paired_encoders(name, SIZE)
    sparse, dense = sparse.double().train(train), dense.double().train(train)
    visible = visible_units(BATCH, (SIZE // 32, SIZE // 32), ratio)
    errors = compare_encoders(sparse, dense, images_for(0).double(), visible)
    assert max(errors.values()) <= TOLERANCE, errors


@pytest.mark.parametrize("sparse", [True, False])
def test_pixels_inside_masked_units_change_nothing(sparse: bool) -> None:
    encoder = build_encoder("efficientnet_b0", sparse=sparse, input_size=SIZE).train()
    assert masked_pixel_sensitivity(encoder, images_for(1), visible_units(BATCH, (3, 3), 0.6)) <= 1e-6


def test_squeeze_pools_each_sample_over_its_visible_sites_only() -> None:
    """Both engines' `sample_means` equal a per-sample mean over the visible sites; `scale_samples` scales by sample."""
    visible = visible_units(BATCH, (3, 3), 0.6)
    full = torch.randn(BATCH, 5, 12, 12)  # stride 8: 4x4 sites per unit
    keep = visible.repeat_interleave(4, 1).repeat_interleave(4, 2)
    expected = torch.stack([full[b][:, keep[b]].mean(1) for b in range(BATCH)])
    rows = full.permute(0, 2, 3, 1).reshape(-1, 5)[SitePyramid(visible, 32).at(8).flat]
    for engine, data in ((SparseEngine(visible, 32), rows), (MaskedDenseEngine(visible, 32), full * keep[:, None])):
        x = FeatureMap(data, 8)
        assert torch.allclose(engine.sample_means(x), expected, atol=1e-6)
        factors = torch.rand(BATCH, 5)
        scaled = engine.dense(engine.scale_samples(x, factors))
        assert torch.allclose(scaled, full * keep[:, None] * factors[:, :, None, None], atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_nothing_masked_equals_timm_and_weights_load_into_timm(name: str) -> None:
    encoder, _ = paired_encoders(name, SIZE, seed=3)
    encoder.eval()
    reference = timm.create_model(name, features_only=True, out_indices=(1, 2, 3, 4)).eval()
    missing, unexpected = reference.load_state_dict(encoder.timm_state_dict(), strict=False)
    assert not missing and not unexpected
    head = {key for key in timm.create_model(name, num_classes=0).state_dict() if key not in encoder.timm_state_dict()}
    assert head and all(key.startswith(("conv_head.", "bn2.")) for key in head)
    images = images_for(2)
    with torch.no_grad():
        outputs = encoder(images, torch.ones(BATCH, 3, 3, dtype=torch.bool))
        expected = reference(images)
    assert [o.shape[1] for o in outputs] == encoder.out_channels and encoder.out_strides == [4, 8, 16, 32]
    for output, target in zip(outputs, expected, strict=True):
        assert (output - target).abs().max() <= TOLERANCE * target.abs().max()


def test_bf16_autocast_and_one_unit_per_image() -> None:
    encoder = build_encoder("mobilenetv3_large_100", input_size=32).train()
    images = torch.randn(2, 3, 32, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = encoder(images, torch.ones(2, 1, 1, dtype=torch.bool))
    sum(o.float().sum() for o in outputs).backward()
    assert [tuple(o.shape[-2:]) for o in outputs] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    assert torch.isfinite(images.grad).all()
