import pytest
import torch

from hiermae.masking.units import from_units, to_units
from hiermae.utils.registry import LOSSES, TARGETS, build_part


def test_units_round_trip():
    maps = torch.randn(2, 3, 64, 96)
    units = to_units(maps, 32)
    assert units.shape == (2, 2, 3, 32 * 32 * 3)
    assert torch.equal(units[1, 0, 2], maps[1, :, :32, 64:].permute(1, 2, 0).flatten())
    assert torch.equal(from_units(units, 32, 3), maps)


def test_normalized_pixels_have_zero_mean_unit_variance_and_invert():
    target = build_part(TARGETS, "norm_pixels")
    images = torch.rand(2, 3, 64, 64) * 5 + 2
    normalized = target(images, 32)
    units = to_units(normalized, 32)
    assert torch.allclose(units.mean(-1), torch.zeros(2, 2, 2), atol=1e-5)
    assert torch.allclose(units.var(-1), torch.ones(2, 2, 2), atol=1e-3)
    assert torch.allclose(target.to_image(normalized, images, 32), images, atol=1e-4)


def test_pixel_target_is_identity():
    images = torch.rand(1, 3, 32, 32)
    target = build_part(TARGETS, "pixels")
    assert torch.equal(target(images, 32), images) and torch.equal(target.to_image(images, images, 32), images)


def test_hog_histograms_follow_edge_orientation():
    target = build_part(TARGETS, "hog")
    vertical_edge = torch.zeros(1, 3, 32, 32)
    vertical_edge[..., 16:] = 1.0
    hog = target(vertical_edge, 32)
    assert hog.shape == (1, 27, 4, 4)
    per_bin = hog.view(1, 3, 9, 4, 4).sum((0, 1, 3, 4))
    assert int(per_bin.argmax()) == 0  # horizontal gradient → orientation bin 0
    assert torch.allclose(to_units(hog, 4).norm(dim=-1), torch.ones(1, 1, 1))
    assert target.to_image(hog, vertical_edge, 32) is None
    with pytest.raises(ValueError, match="divide the mask unit"):
        target(torch.zeros(1, 3, 36, 36), 12)


@pytest.mark.parametrize("name", ["mse", "l1"])
def test_loss_ignores_visible_units(name):
    loss_fn = build_part(LOSSES, name)
    target = torch.randn(2, 3, 64, 64)
    prediction = torch.randn(2, 3, 64, 64)
    visible = torch.tensor([[[True, False], [False, True]], [[False, True], [True, True]]])
    base = loss_fn(prediction, target, visible)
    changed = prediction.clone()
    changed[0, :, :32, :32] += 100.0  # a visible unit of sample 0
    changed[1, :, 32:, 32:] -= 50.0  # a visible unit of sample 1
    assert torch.equal(loss_fn(changed, target, visible), base)
    changed[1, :, :32, :32] += 1.0  # the masked unit of sample 1
    assert loss_fn(changed, target, visible) > base


def test_loss_is_mean_over_masked_units():
    loss_fn = build_part(LOSSES, "mse")
    target = torch.zeros(1, 3, 64, 64)
    prediction = torch.zeros(1, 3, 64, 64)
    prediction[0, :, 32:, :32] = 2.0  # masked unit, error 4
    visible = torch.tensor([[[True, False], [False, True]]])
    assert float(loss_fn(prediction, target, visible)) == pytest.approx(2.0)


def test_unknown_target_and_loss_list_valid_names():
    with pytest.raises(ValueError, match="hog, norm_pixels, pixels"):
        build_part(TARGETS, "depth")
    with pytest.raises(ValueError, match="l1, mse"):
        build_part(LOSSES, "huber")
