import pytest
import torch

from hiermae.masking.masks import MaskPyramid, check_divisible, check_mask_ratio
from hiermae.utils.registry import MASK_GENERATORS, build_part

GENERATORS = ["random", "blockwise", "uniform", "batch_shared"]


@pytest.mark.parametrize("name", GENERATORS)
def test_exact_visible_count_per_sample(name):
    generator = build_part(MASK_GENERATORS, {"type": name, "mask_ratio": 0.75})
    visible = generator(5, (6, 8), torch.arange(5))
    assert visible.shape == (5, 6, 8) and visible.dtype == torch.bool
    assert visible.flatten(1).sum(1).tolist() == [12] * 5


@pytest.mark.parametrize("ratio", [0.4, 0.6, 0.9])
@pytest.mark.parametrize("name", ["random", "blockwise"])
def test_ratio_is_respected(name, ratio):
    visible = build_part(MASK_GENERATORS, {"type": name, "mask_ratio": ratio})(3, (7, 7), torch.arange(3))
    assert visible.flatten(1).sum(1).tolist() == [49 - round(49 * ratio)] * 3


@pytest.mark.parametrize("name", GENERATORS)
def test_seeded_masks_repeat_and_depend_only_on_the_seed(name):
    generator = build_part(MASK_GENERATORS, {"type": name})
    first = generator(3, (4, 4), torch.tensor([7, 8, 9]))
    again = generator(3, (4, 4), torch.tensor([7, 8, 9]))
    assert torch.equal(first, again)
    if name != "batch_shared":
        alone = generator(1, (4, 4), torch.tensor([8]))
        assert torch.equal(alone[0], first[1])
        other = generator(3, (4, 4), torch.tensor([10, 11, 12]))
        assert not torch.equal(other, first)


def test_uniform_keeps_one_per_two_by_two_block():
    visible = build_part(MASK_GENERATORS, "uniform")(4, (6, 4), torch.arange(4))
    blocks = visible.view(4, 3, 2, 2, 2).sum((2, 4))
    assert torch.equal(blocks, torch.ones_like(blocks))


def test_batch_shared_is_one_mask():
    visible = build_part(MASK_GENERATORS, "batch_shared")(4, (4, 4), torch.arange(4))
    assert all(torch.equal(visible[0], v) for v in visible)


def test_blockwise_masks_are_clustered():
    """Block-wise masks have more masked neighbours per masked unit than random ones."""

    def masked_neighbour_rate(visible):
        masked = (~visible).float()
        pairs = (masked[:, 1:] * masked[:, :-1]).sum() + (masked[:, :, 1:] * masked[:, :, :-1]).sum()
        return float(pairs / masked.sum())

    seeds = torch.arange(32)
    block = build_part(MASK_GENERATORS, {"type": "blockwise", "mask_ratio": 0.5})(32, (14, 14), seeds)
    rand = build_part(MASK_GENERATORS, {"type": "random", "mask_ratio": 0.5})(32, (14, 14), seeds)
    assert masked_neighbour_rate(block) > masked_neighbour_rate(rand) + 0.2


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_mask_ratio_out_of_range_is_named(ratio):
    with pytest.raises(ValueError, match="mask ratio"):
        check_mask_ratio(ratio)
    with pytest.raises(ValueError, match="mask ratio"):
        build_part(MASK_GENERATORS, {"type": "random", "mask_ratio": ratio})


def test_unknown_generator_lists_valid_names():
    with pytest.raises(ValueError, match="blockwise.*random"):
        build_part(MASK_GENERATORS, "checkerboard")


def test_size_not_divisible_by_unit_is_named():
    with pytest.raises(ValueError, match="not divisible by the mask unit 32"):
        check_divisible((100, 96), 32)


def test_pyramid_is_block_repetition():
    visible = torch.tensor([[[True, False], [False, True]]])
    pyramid = MaskPyramid(visible, 32)
    level = pyramid.at(8)
    assert level.shape == (1, 8, 8)
    assert level[0, :4, :4].all() and not level[0, :4, 4:].any() and level[0, 4:, 4:].all()
    assert torch.equal(pyramid.at(32), visible)
    with pytest.raises(ValueError, match="does not divide"):
        pyramid.at(12)
