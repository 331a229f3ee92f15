"""Window grouping and packing: the packed attention pattern is exactly timm's shifted-window pattern."""

import pytest
import torch
from timm.models.swin_transformer import SwinTransformerBlock, get_relative_position_index, window_partition

from hiermae.backbones.swin import SwinEncoder
from hiermae.backbones.swin_windows import WindowGeometry, pack_groups, pack_windows
from hiermae.masking.plans import tensor_leaves, to_device
from hiermae.utils.registry import MASK_GENERATORS


@pytest.mark.parametrize("seed", range(5))
def test_pack_groups_places_every_group_without_overlap(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 50, (200,), generator=generator).tolist()
    bin_of, start_of, num_bins = pack_groups(sizes, 49)
    occupied = torch.zeros(num_bins, 49, dtype=torch.int)
    for size, target, start in zip(sizes, bin_of, start_of, strict=True):
        assert start + size <= 49
        occupied[target, start : start + size] += 1
    assert int(occupied.max()) == 1 and int(occupied.sum()) == sum(sizes)
    assert num_bins <= 1.1 * sum(sizes) / 49 + 2


def test_pack_groups_fills_bins_best_first_and_rejects_oversized_groups() -> None:
    bin_of, start_of, num_bins = pack_groups([3, 1, 2, 4], 5)
    assert num_bins == 2 and bin_of[3] == bin_of[1] and bin_of[0] == bin_of[2]
    with pytest.raises(ValueError, match="exceeds"):
        pack_groups([6], 5)


def timm_attention_pairs(block: SwinTransformerBlock, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which visible tokens timm lets attend to each other (same window, mask 0) and their bias-table index.

    Built from timm's own window_partition and attn_mask on a map of token ids; padding sites are left out.
    """
    batch, height, width = visible.shape
    ids = torch.full((batch, height, width), -1, dtype=torch.long)
    ids[visible] = torch.arange(int(visible.sum()))
    shifted = torch.roll(ids, (-block.shift_size[0], -block.shift_size[1]), (1, 2))
    geometry = WindowGeometry((height, width), block.window_size, block.shift_size)
    padded_h, padded_w = geometry.padded_grid
    shifted = torch.nn.functional.pad(shifted, (0, padded_w - width, 0, padded_h - height), value=-1)
    windows = window_partition(shifted.unsqueeze(-1), block.window_size).flatten(1)  # (B·nW, area)
    num_tokens = int(visible.sum())
    allowed = torch.zeros(num_tokens, num_tokens, dtype=torch.bool)
    relative = torch.full((num_tokens, num_tokens), -1, dtype=torch.long)
    for w, window in enumerate(windows):
        present = (window >= 0).nonzero()[:, 0]
        pairs = torch.ones(len(present), len(present), dtype=torch.bool)
        if block.attn_mask is not None:
            pairs = block.attn_mask[w % len(block.attn_mask)][present][:, present] == 0
        token = window[present]
        allowed[token.unsqueeze(1), token.unsqueeze(0)] = pairs
        relative[token.unsqueeze(1), token.unsqueeze(0)] = block.attn.relative_position_index[present][:, present]
    return allowed, relative


def packed_attention_pairs(block: SwinTransformerBlock, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same two matrices read from the packing of the visible tokens."""
    geometry = WindowGeometry(tuple(visible.shape[1:]), block.window_size, block.shift_size)
    packing = pack_windows(
        visible.nonzero(as_tuple=True), visible.shape[0], geometry, block.attn.relative_position_index
    )
    bins, slots = packing.token_bin, packing.token_offset
    same_bin = bins.unsqueeze(1) == bins.unsqueeze(0)
    pair_bins, rows, cols = bins.unsqueeze(1).expand_as(same_bin), slots.unsqueeze(1), slots.unsqueeze(0)
    index = packing.bias_index(packing.blocked())[pair_bins, rows, cols]
    allowed = same_bin & (index != geometry.num_relative_positions)
    relative = torch.where(allowed, index, -1)
    return allowed, relative


@pytest.mark.parametrize("mask_ratio", [0.0, 0.6])
@pytest.mark.parametrize("grid,window,shift", [(8, 4, 0), (8, 4, 2), (16, 7, 0), (16, 7, 3), (12, 6, 3)])
def test_packing_reproduces_timm_window_and_shift_mask(grid: int, window: int, shift: int, mask_ratio: float) -> None:
    block = SwinTransformerBlock(
        dim=8, input_resolution=(grid, grid), num_heads=2, window_size=window, shift_size=shift
    )
    visible = torch.ones(2, grid, grid, dtype=torch.bool)
    if mask_ratio:
        units = MASK_GENERATORS.build({"type": "random", "mask_ratio": mask_ratio})(2, (grid // 2, grid // 2))
        visible = units.repeat_interleave(2, 1).repeat_interleave(2, 2)
    expected_allowed, expected_relative = timm_attention_pairs(block, visible)
    allowed, relative = packed_attention_pairs(block, visible)
    assert torch.equal(allowed, expected_allowed)
    assert torch.equal(relative, torch.where(expected_allowed, expected_relative, -1))


def test_full_windows_pack_without_empty_slots_and_padding_sites_join_their_groups() -> None:
    visible = torch.ones(2, 8, 8, dtype=torch.bool)
    sites = visible.nonzero(as_tuple=True)
    packing = pack_windows(sites, 2, WindowGeometry((8, 8), (4, 4), (0, 0)), get_relative_position_index(4, 4))
    assert packing.num_bins == 8 and packing.empty_fraction == 0.0
    padded = pack_windows(sites, 2, WindowGeometry((8, 8), (7, 7), (3, 3)), get_relative_position_index(7, 7))
    # timm pads 8 -> 14; a padding site joins only a (window, region) group that holds a token: 21 + 21 + 15
    assert padded.num_filled == 2 * (64 + 57) and int((padded.source < 128).sum()) == 128


@pytest.mark.parametrize("mask_ratio", [0.6, 0.75])
def test_padding_overhead_of_swin_tiny_is_small(mask_ratio: float) -> None:
    encoder = SwinEncoder("swin_tiny_patch4_window7_224", input_size=224)
    visible = MASK_GENERATORS.build({"type": "random", "mask_ratio": mask_ratio})(8, (7, 7), torch.arange(8))
    overhead = encoder.padding_overhead(visible)
    print(f"padding overhead at mask ratio {mask_ratio}: {overhead:.3f}")
    assert 0.0 <= overhead <= 0.15


def test_bias_by_matmul_equals_bias_by_gather_with_gradients():
    """The GPU path (one-hot matmuls) and the CPU path (table gather) give the same bias and table gradient."""
    import hiermae
    from hiermae.backbones.swin_sparse import packed_bias_by_gather, packed_bias_by_matmul, packed_masks

    encoder = hiermae.build_encoder("swin_tiny_patch4_window7_224", input_size=224)
    block = encoder.model.layers[0].blocks[1]
    torch.nn.init.normal_(block.attn.relative_position_bias_table)
    visible = hiermae.masking.masks.RandomMask(0.75)(2, (7, 7), torch.arange(2))
    packing = encoder.planner("cpu")(visible)[0].packings[1]  # the shifted geometry of stage 1
    results = []
    for build, by_matmul in ((packed_bias_by_gather, False), (packed_bias_by_matmul, True)):
        block.attn.relative_position_bias_table.grad = None
        bias = build(block.attn, packed_masks(packing, by_matmul))
        finite = torch.isfinite(bias)
        (bias[finite] * torch.linspace(0, 1, int(finite.sum()))).sum().backward()
        results.append((bias, finite, block.attn.relative_position_bias_table.grad.clone()))
    (gather_bias, gather_finite, gather_grad), (matmul_bias, matmul_finite, matmul_grad) = results
    assert torch.equal(gather_finite, matmul_finite)
    assert torch.allclose(gather_bias[gather_finite], matmul_bias[matmul_finite], atol=1e-5)
    assert torch.allclose(gather_grad, matmul_grad, atol=1e-4)


def test_plan_packs_each_stage_geometry_once_and_its_blocks_share_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """swin_tiny at 224 px: stages 0-2 have a plain and a shifted geometry, stage 3 (7×7 grid) only a plain one."""
    import hiermae.backbones.swin as swin

    calls = []
    monkeypatch.setattr(swin, "pack_windows", lambda *args: calls.append(args[2]) or pack_windows(*args))
    encoder = SwinEncoder("swin_tiny_patch4_window7_224", input_size=224)
    visible = MASK_GENERATORS.build({"type": "random", "mask_ratio": 0.75})(2, (7, 7), torch.arange(2))
    plans = encoder.planner("cpu")(visible)
    assert len(calls) == len(set(calls)) == 7
    for plan, stage in zip(plans, encoder.model.layers, strict=True):
        assert len(plan.block_packing) == len(stage.blocks)
        assert plan.block_packing == [i % len(plan.packings) for i in range(len(stage.blocks))]


def test_plan_moves_to_another_device_in_one_copy_keeping_shapes_and_sharing() -> None:
    """`to_device` as on a GPU, with the meta device standing in: every CPU tensor moves, views of one buffer."""
    encoder = SwinEncoder("swin_tiny_patch4_window7_224", input_size=224)
    visible = MASK_GENERATORS.build({"type": "random", "mask_ratio": 0.75})(2, (7, 7), torch.arange(2))
    plans = encoder.planner("cpu")(visible)
    moved = to_device(plans, torch.device("meta"))
    before, after = tensor_leaves(plans), tensor_leaves(moved)
    assert [t.shape for t in before] == [t.shape for t in after] and all(t.is_meta for t in after)
    assert [t.dtype for t in before] == [t.dtype for t in after]
    storage_sizes = {t.untyped_storage().nbytes() for t in after}  # all views of one buffer holding them all
    assert len(storage_sizes) == 1 and storage_sizes.pop() >= sum(t.numel() * t.element_size() for t in before)
    index_tables = [packing.relative_position_index for plan in moved for packing in plan.packings]
    assert all(table is index_tables[0] for table in index_tables[:4])  # stage 0-1 windows share one table
