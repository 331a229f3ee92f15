"""Swin's (shifted) window attention groups over visible tokens only, packed into equal-size bins.

A Swin token attends to the tokens of its own window and, in shifted blocks, only to those of its own region of
the cyclically shifted grid (timm's -100 attention mask). Over visible tokens only, these attention groups have
uneven sizes, and some windows are empty. Packing several groups into one bin of `window area` slots, with a
block-diagonal mask, gives every bin the same shape while the work stays proportional to the visible tokens
(GreenMIM's idea, Huang et al. 2022). Packing is best-fit decreasing on group sizes.
"""

import warnings
from dataclasses import dataclass

import torch

REGIONS_PER_AXIS = 3  # timm's shifted-window mask splits each axis into three regions


@dataclass(frozen=True)
class WindowGeometry:
    """One block's partition of an H×W feature grid: window size and cyclic shift per axis, as timm sets them."""

    grid: tuple[int, int]
    window: tuple[int, int]
    shift: tuple[int, int]

    @property
    def padded_grid(self) -> tuple[int, int]:
        """The grid rounded up to whole windows (timm zero-pads the shifted map to this size)."""
        return tuple(-(-size // window) * window for size, window in zip(self.grid, self.window, strict=True))

    @property
    def window_area(self) -> int:
        return self.window[0] * self.window[1]

    @property
    def num_relative_positions(self) -> int:
        """Rows of the relative position bias table: (2·Wh − 1)(2·Ww − 1)."""
        return (2 * self.window[0] - 1) * (2 * self.window[1] - 1)

    def shifted(self, ys: torch.Tensor, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coordinates after timm's cyclic shift `roll(x, -shift)` (before padding)."""
        if self.shift == (0, 0):
            return ys, xs
        return (ys - self.shift[0]) % self.grid[0], (xs - self.shift[1]) % self.grid[1]

    def locate(self, batch: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention-group key and in-window position (row-major) of sites given in shifted, padded coordinates."""
        (padded_h, padded_w), (window_h, window_w) = self.padded_grid, self.window
        windows_per_row = padded_w // window_w
        window = (batch * (padded_h // window_h) + ys // window_h) * windows_per_row + xs // window_w  # (N,) id
        region = shift_region(ys, padded_h, window_h, self.shift[0]) * REGIONS_PER_AXIS + shift_region(
            xs, padded_w, window_w, self.shift[1]
        )
        return window * REGIONS_PER_AXIS**2 + region, (ys % window_h) * window_w + xs % window_w  # (N,), (N,)

    def padding_sites(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(batch, y, x) of every padded site of the shifted, padded grid (empty when windows tile the grid)."""
        (padded_h, padded_w), (height, width) = self.padded_grid, self.grid
        if (padded_h, padded_w) == (height, width):
            empty = torch.empty(0, dtype=torch.long, device=device)
            return empty, empty, empty
        ys, xs = torch.meshgrid(
            torch.arange(padded_h, device=device), torch.arange(padded_w, device=device), indexing="ij"
        )
        is_padding = (ys >= height) | (xs >= width)  # Hp Wp
        ys, xs = ys[is_padding], xs[is_padding]  # (P,) padded sites of one sample
        batch = torch.arange(batch_size, device=device).repeat_interleave(len(ys))
        return batch, ys.repeat(batch_size), xs.repeat(batch_size)


def shift_region(coords: torch.Tensor, padded: int, window: int, shift: int) -> torch.Tensor:
    """Region index along one axis in timm's shifted-window mask: [0, P-w), [P-w, P-s), [P-s, P); 0 if unshifted."""
    if shift == 0:
        return torch.zeros_like(coords)
    return (coords >= padded - window).long() + (coords >= padded - shift).long()


def pack_groups(sizes: list[int], capacity: int) -> tuple[list[int], list[int], int]:
    """Best-fit decreasing bin packing: each group, largest first, goes to the fullest bin it still fits in.

    Returns each group's bin, its first slot in that bin, and the number of bins. Bins are kept by free room;
    the bits of `open_rooms` say which rooms have a bin, so the best fit is one bit operation (this loop runs on
    the host for every group of every step).
    """
    if sizes and max(sizes) > capacity:
        raise ValueError(f"attention group of {max(sizes)} tokens exceeds the bin capacity {capacity}")
    order = sorted(range(len(sizes)), key=sizes.__getitem__, reverse=True)
    bins_by_room: list[list[int]] = [[] for _ in range(capacity)]
    open_rooms = 0  # bit r set while some partly filled bin has exactly r free slots
    fill: list[int] = []
    bin_of, start_of = [0] * len(sizes), [0] * len(sizes)
    for group in order:
        size = sizes[group]
        fitting = open_rooms >> size
        if fitting:
            room = size + (fitting & -fitting).bit_length() - 1
            target = bins_by_room[room].pop()
            if not bins_by_room[room]:
                open_rooms ^= 1 << room
        else:
            target, room = len(fill), capacity
            fill.append(0)
        bin_of[group], start_of[group] = target, fill[target]
        fill[target] += size
        if room > size:
            bins_by_room[room - size].append(target)
            open_rooms |= 1 << (room - size)
    return bin_of, start_of, len(fill)


def bin_budget(max_tokens: int, capacity: int) -> int:
    """Bins a packing is padded to when no budget was calibrated (`SwinPlanner.calibrated`): the lower bound
    ⌈tokens / capacity⌉ plus 2 % and 4 bins.

    For random masks best-fit decreasing stayed within 11 bins (≤ 1.2 %) of the lower bound on every stage of
    Swin-T at 224 px, batch 8 and 128; blockwise masks needed up to 16 % more on some stages
    (benchmarks/swin_bin_budget.py), hence calibration. A packing that needs more bins than its budget is padded
    to the next multiple of 16 instead: a new shape, so a compiled step compiles once more.
    """
    return -(-max_tokens * 102 // (100 * capacity)) + 4


@dataclass(frozen=True)
class WindowPacking:
    """Where every visible token of one stage sits in the packed attention bins of one window geometry.

    Packed slot r reads row `source[r]` of [visible tokens; zero row]: a token index, or `num_tokens` for a
    padding site of timm's window padding (timm pads the normed map with zeros) and for an empty slot. Slots of
    different attention groups (other window, other region) may not attend each other; empty slots form one group
    per bin (`slot_group` -1), so no row is fully blocked; their outputs are never read. Bins beyond those the
    packing fills are empty, so the number of bins is a fixed budget (`bin_budget`) rather than the mask's.
    With `samples` > 1 the packing describes one sample and serves each of `samples` samples that share one mask
    (their tokens follow each other in equal blocks): one plan for the whole batch, as in GreenMIM.
    The fields are compact index tensors, built on the host and sent to the device together.
    """

    source: torch.Tensor  # (num_bins * capacity,) long
    token_bin: torch.Tensor  # (num_tokens,) bin of each visible token
    token_offset: torch.Tensor  # (num_tokens,) its slot within the bin
    token_slot: torch.Tensor  # (num_tokens,) its flat slot, bin · capacity + offset: the inverse of `source`
    tokenless_slots: torch.Tensor  # (E,) the flat slots holding no token: timm's padding sites and empty slots
    slot_group: torch.Tensor  # (num_bins, capacity) attention group of each slot, -1 when empty
    slot_position: torch.Tensor  # (num_bins, capacity) position of each slot inside its window
    relative_position_index: torch.Tensor  # timm's window-area × window-area bias-table index
    geometry: WindowGeometry
    num_bins: int
    num_filled: int  # slots holding a visible token or a padding site (per sample when samples > 1)
    samples: int = 1

    @property
    def capacity(self) -> int:
        """Slots per bin: one window's area."""
        return self.geometry.window_area

    @property
    def has_padding(self) -> bool:
        """Whether timm pads this geometry's grid to whole windows (padding sites take part in attention)."""
        return self.geometry.padded_grid != self.geometry.grid

    @property
    def empty_fraction(self) -> float:
        """Fraction of packed slots that hold no token (the padding overhead of packing)."""
        return 1.0 - self.num_filled / max(1, self.num_bins * self.capacity)

    def blocked(self) -> torch.Tensor:
        """(num_bins, capacity, capacity) bool: pairs of slots that may not attend each other."""
        return self.slot_group.unsqueeze(2) != self.slot_group.unsqueeze(1)  # bins, cap, 1 vs bins, 1, cap

    def bias_index(self, blocked: torch.Tensor) -> torch.Tensor:
        """(num_bins, capacity, capacity) bias-table row of each pair of slots; `blocked` pairs index one row past
        the table, which attention fills with -inf."""
        positions = self.slot_position
        index = self.relative_position_index[positions.unsqueeze(2), positions.unsqueeze(1)]  # bins, cap, cap
        return index.masked_fill(blocked, self.geometry.num_relative_positions)

    def slot_one_hot(self) -> torch.Tensor:
        """(num_bins, capacity, window area) float32 one-hot of each slot's position inside its window."""
        one_hot = self.slot_position.new_zeros(*self.slot_position.shape, self.capacity, dtype=torch.float32)
        return one_hot.scatter_(2, self.slot_position.unsqueeze(2), 1.0)  # bins, cap, area


def pack_windows(
    sites: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    batch_size: int,
    geometry: WindowGeometry,
    relative_position_index: torch.Tensor,
    budget: int | None = None,
) -> WindowPacking:
    """Group visible sites (batch, y, x) by (shifted) window and region, and pack the groups into bins.

    Padding sites of timm's window padding join the groups of visible tokens they share a region with (they take
    part in timm's attention); `relative_position_index` is timm's window-area × window-area bias-table index.
    The bins are padded with empty ones up to `budget` (see `bin_budget`; None: no padding). Meant for sites on
    the CPU: group sizes steer the packing, so on a GPU every step here would wait for it.
    """
    batch, ys, xs = sites
    num_tokens = len(batch)
    keys, positions = geometry.locate(batch, *geometry.shifted(ys, xs))
    padding = geometry.padding_sites(batch_size, batch.device)
    if len(padding[0]):
        padding_keys, padding_positions = geometry.locate(*padding)
        needed = torch.isin(padding_keys, keys)
        keys = torch.cat([keys, padding_keys[needed]])  # (N + P',): tokens first, then the padding sites used
        positions = torch.cat([positions, padding_positions[needed]])
    group_of, sizes, rank = group_members(keys)
    capacity = geometry.window_area
    bin_of, start_of, filled_bins = pack_groups(sizes.tolist(), capacity)
    if budget is None or filled_bins <= budget:
        num_bins = filled_bins if budget is None else budget
    else:
        num_bins = -(-filled_bins // 16) * 16
        warnings.warn(
            f"Swin packing needed {filled_bins} bins, over its budget of {budget}: padded to {num_bins} (a new "
            "shape: a compiled step compiles again). Calibrate the planner on the training masks to avoid this.",
            stacklevel=2,
        )
    bin_of, start_of = torch.tensor(bin_of, device=keys.device), torch.tensor(start_of, device=keys.device)
    offset = start_of[group_of] + rank  # (N + P',) slot inside the member's bin
    slot = bin_of[group_of] * capacity + offset  # (N + P',) flat slot in bins × capacity

    total = num_bins * capacity
    source = torch.full((total,), num_tokens, dtype=torch.long, device=keys.device)  # bins·cap: the zero row
    source[slot[:num_tokens]] = torch.arange(num_tokens, device=keys.device)  # ... except where a token sits
    slot_group = torch.full((total,), -1, dtype=torch.long, device=keys.device)
    slot_group[slot] = group_of
    slot_position = torch.zeros(total, dtype=torch.long, device=keys.device)
    slot_position[slot] = positions
    return WindowPacking(
        source=source,
        token_bin=bin_of[group_of[:num_tokens]],
        token_offset=offset[:num_tokens],
        token_slot=slot[:num_tokens],
        tokenless_slots=(source == num_tokens).nonzero()[:, 0],
        slot_group=slot_group.view(num_bins, capacity),
        slot_position=slot_position.view(num_bins, capacity),
        relative_position_index=relative_position_index,
        geometry=geometry,
        num_bins=num_bins,
        num_filled=len(keys),
    )


def group_members(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Groups of equal keys, numbered in key order: each member's group, the group sizes, and each member's rank
    within its group (0, 1, 2, ... following the members' order); one stable sort."""
    order = torch.argsort(keys, stable=True)  # (M,)
    sorted_keys = keys[order]  # (M,) equal keys adjacent
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    starts = first.nonzero()[:, 0]  # (G,) first sorted position of each group
    sizes = torch.diff(starts, append=starts.new_tensor([len(keys)]))  # (G,)
    group_sorted = torch.cumsum(first, 0) - 1  # (M,) group of each sorted member
    group_of, rank = torch.empty_like(keys), torch.empty_like(keys)
    group_of[order] = group_sorted
    rank[order] = torch.arange(len(keys), device=keys.device) - starts[group_sorted]
    return group_of, sizes, rank
