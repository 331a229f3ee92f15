"""Swin's (shifted) window attention groups over visible tokens only, packed into equal-size bins.

A Swin token attends to the tokens of its own window and, in shifted blocks, only to those of its own region of
the cyclically shifted grid (timm's -100 attention mask). Over visible tokens only, these attention groups have
uneven sizes, and some windows are empty. Packing several groups into one bin of `window area` slots, with a
block-diagonal mask, gives every bin the same shape while the work stays proportional to the visible tokens
(GreenMIM's idea, Huang et al. 2022). Packing is best-fit decreasing on group sizes.
"""

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
        return (ys - self.shift[0]) % self.grid[0], (xs - self.shift[1]) % self.grid[1]

    def locate(self, batch: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention-group key and in-window position (row-major) of sites given in shifted, padded coordinates."""
        (padded_h, padded_w), (window_h, window_w) = self.padded_grid, self.window
        windows_per_row = padded_w // window_w
        window = (batch * (padded_h // window_h) + ys // window_h) * windows_per_row + xs // window_w
        region = shift_region(ys, padded_h, window_h, self.shift[0]) * REGIONS_PER_AXIS + shift_region(
            xs, padded_w, window_w, self.shift[1]
        )
        return window * REGIONS_PER_AXIS**2 + region, (ys % window_h) * window_w + xs % window_w

    def padding_sites(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(batch, y, x) of every padded site of the shifted, padded grid (empty when windows tile the grid)."""
        (padded_h, padded_w), (height, width) = self.padded_grid, self.grid
        ys, xs = torch.meshgrid(
            torch.arange(padded_h, device=device), torch.arange(padded_w, device=device), indexing="ij"
        )
        is_padding = (ys >= height) | (xs >= width)
        ys, xs = ys[is_padding], xs[is_padding]
        batch = torch.arange(batch_size, device=device).repeat_interleave(len(ys))
        return batch, ys.repeat(batch_size), xs.repeat(batch_size)


def shift_region(coords: torch.Tensor, padded: int, window: int, shift: int) -> torch.Tensor:
    """Region index along one axis in timm's shifted-window mask: [0, P-w), [P-w, P-s), [P-s, P); 0 if unshifted."""
    if shift == 0:
        return torch.zeros_like(coords)
    return (coords >= padded - window).long() + (coords >= padded - shift).long()


def pack_groups(sizes: list[int], capacity: int) -> tuple[list[int], list[int], int]:
    """Best-fit decreasing bin packing: each group, largest first, goes to the fullest bin it still fits in.

    Returns each group's bin, its first slot in that bin, and the number of bins.
    """
    order = sorted(range(len(sizes)), key=sizes.__getitem__, reverse=True)
    bins_by_room: list[list[int]] = [[] for _ in range(capacity + 1)]
    fill: list[int] = []
    bin_of, start_of = [0] * len(sizes), [0] * len(sizes)
    for group in order:
        size = sizes[group]
        if size > capacity:
            raise ValueError(f"attention group of {size} tokens exceeds the bin capacity {capacity}")
        room = next((room for room in range(size, capacity) if bins_by_room[room]), None)
        if room is None:
            target, room = len(fill), capacity
            fill.append(0)
        else:
            target = bins_by_room[room].pop()
        bin_of[group], start_of[group] = target, fill[target]
        fill[target] += size
        if room > size:
            bins_by_room[room - size].append(target)
    return bin_of, start_of, len(fill)


@dataclass(frozen=True)
class WindowPacking:
    """Where every visible token of one stage sits in the packed attention bins of one window geometry.

    Packed slot r reads row `source[r]` of [visible tokens; zero row]: a token index, or `num_tokens` for a
    padding site of timm's window padding (timm pads the normed map with zeros) and for an empty slot. Pairs of
    slots index the relative position bias table through `bias_index`; pairs that may not attend each other
    (other group, other region) index one row past the table, which attention fills with -inf. Empty slots form
    one group per bin, so no row is fully blocked; their outputs are never read.
    """

    source: torch.Tensor  # (num_bins * capacity,) long
    token_bin: torch.Tensor  # (num_tokens,) bin of each visible token
    token_offset: torch.Tensor  # (num_tokens,) its slot within the bin
    bias_index: torch.Tensor  # (num_bins, capacity, capacity) long
    slot_position: torch.Tensor  # (num_bins, capacity) position of each slot inside its window
    blocked: torch.Tensor  # (num_bins, capacity, capacity) bool: pairs that may not attend each other
    num_bins: int
    capacity: int
    num_filled: int  # slots holding a visible token or a padding site

    @property
    def empty_fraction(self) -> float:
        """Fraction of packed slots that hold no token (the padding overhead of packing)."""
        return 1.0 - self.num_filled / max(1, self.num_bins * self.capacity)


def pack_windows(
    sites: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    batch_size: int,
    geometry: WindowGeometry,
    relative_position_index: torch.Tensor,
) -> WindowPacking:
    """Group visible sites (batch, y, x) by (shifted) window and region, and pack the groups into bins.

    Padding sites of timm's window padding join the groups of visible tokens they share a region with (they take
    part in timm's attention); `relative_position_index` is timm's window-area × window-area bias-table index.
    """
    batch, ys, xs = sites
    num_tokens = len(batch)
    keys, positions = geometry.locate(batch, *geometry.shifted(ys, xs))
    padding = geometry.padding_sites(batch_size, batch.device)
    if len(padding[0]):
        padding_keys, padding_positions = geometry.locate(*padding)
        needed = torch.isin(padding_keys, keys)
        keys = torch.cat([keys, padding_keys[needed]])
        positions = torch.cat([positions, padding_positions[needed]])
    _, group_of, sizes = torch.unique(keys, return_inverse=True, return_counts=True)
    capacity = geometry.window_area
    bin_of, start_of, num_bins = pack_groups(sizes.tolist(), capacity)
    bin_of, start_of = torch.tensor(bin_of, device=keys.device), torch.tensor(start_of, device=keys.device)
    offset = start_of[group_of] + rank_in_group(group_of, sizes)
    slot = bin_of[group_of] * capacity + offset

    total = num_bins * capacity
    source = torch.full((total,), num_tokens, dtype=torch.long, device=keys.device)
    source[slot[:num_tokens]] = torch.arange(num_tokens, device=keys.device)
    slot_group = torch.full((total,), -1, dtype=torch.long, device=keys.device)
    slot_group[slot] = group_of
    slot_position = torch.zeros(total, dtype=torch.long, device=keys.device)
    slot_position[slot] = positions
    slot_group, slot_position = slot_group.view(num_bins, capacity), slot_position.view(num_bins, capacity)
    bias_index = relative_position_index[slot_position.unsqueeze(2), slot_position.unsqueeze(1)]
    blocked = slot_group.unsqueeze(2) != slot_group.unsqueeze(1)
    return WindowPacking(
        source=source,
        token_bin=bin_of[group_of[:num_tokens]],
        token_offset=offset[:num_tokens],
        bias_index=bias_index.masked_fill(blocked, geometry.num_relative_positions),
        slot_position=slot_position,
        blocked=blocked,
        num_bins=num_bins,
        capacity=capacity,
        num_filled=len(keys),
    )


def rank_in_group(group_of: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, ... within each group, following the members' order."""
    order = torch.argsort(group_of, stable=True)
    group_start = torch.cumsum(sizes, 0) - sizes
    rank = torch.empty_like(group_of)
    rank[order] = torch.arange(len(group_of), device=group_of.device) - group_start[group_of[order]]
    return rank
