"""Spatial convolutions on visible-site rows `(N, C)`: the backends a layer can pick from.

- `tile`: gather each visible unit's tile with a `padding`-wide border (masked or outside sites read as zero) and
  run the dense kernel on the batch of tiles without padding. The work is exactly that of the visible outputs;
  it handles any kernel, stride and groups (stems, strided convs, downsampling, depthwise, pooling).
- `gather`: im2col from the per-site neighbour table, then one matmul (stride 1, odd kernel, groups 1).
- `dense`: scatter to the zero-filled full grid, run the dense conv, gather the visible outputs (does the masked
  work too; a fallback whose speed is the dense one).
spconv's SubMConv2d is the fourth backend (`hiermae.sparse.spconv_conv`).
"""

import torch
from torch.nn import functional as F

from hiermae.sparse.sites import Sites


def gather_tiles(x: torch.Tensor, sites: Sites, halo: int, fill: float = 0.0) -> torch.Tensor:
    """(U, C, T, T) tiles of the visible units with a `halo` border, T = u + 2·halo (channels-last memory)."""
    size, channels = sites.per_unit + 2 * halo, x.shape[1]
    if halo == 0:
        rows = x
    else:
        padded = torch.cat([x, x.new_full((1, channels), fill)])  # N+1, C: row N is outside/masked
        rows = padded.index_select(0, sites.tiles(halo).reshape(-1))  # U·T·T, C
    return rows.view(sites.num_units, size, size, channels).permute(0, 3, 1, 2)  # U C T T


def rows_from_tiles(tiles: torch.Tensor) -> torch.Tensor:
    """(U, C, t, t) tiles back to unit-major site rows (U·t·t, C)."""
    return tiles.permute(0, 2, 3, 1).reshape(-1, tiles.shape[1])  # U t t C -> U·t·t, C


def scatter_dense(x: torch.Tensor, sites: Sites) -> torch.Tensor:
    """The B×C×H×W map with the site rows in place and zeros at masked sites."""
    height, width = sites.shape
    grid = x.new_zeros(sites.batch_size * height * width, x.shape[1]).index_copy(0, sites.flat, x)  # B·H·W, C
    return grid.view(sites.batch_size, height, width, x.shape[1]).permute(0, 3, 1, 2)  # B C H W


def pixel_tiles(
    images: torch.Tensor, visible: torch.Tensor, units: torch.Tensor, unit: int, halo: int
) -> torch.Tensor:
    """(U, C, T, T) pixel tiles of the visible units with a `halo` border, T = unit + 2·halo; pixels of masked
    units and outside the image read as zero. Only the (U, 3) unit table is needed, no per-pixel table."""
    batch, channels, height, width = images.shape
    grid_h, grid_w = height // unit, width // unit
    b, y, x = units.unbind(1)
    blocks = images.view(batch, channels, grid_h, unit, grid_w, unit)  # B C h u w u
    if halo == 0:
        return blocks[b, :, y, :, x, :]  # U C u u
    keep = visible.to(images.dtype)[:, None, :, None, :, None]  # B 1 h 1 w 1
    masked = (blocks * keep).view(batch, channels, height, width)
    padded = F.pad(masked, (halo, halo, halo, halo))
    size = unit + 2 * halo
    windows = padded.unfold(2, size, unit).unfold(3, size, unit)  # B C h w T T (overlapping views)
    return windows[b, :, y, x]  # U C T T


def conv_tiles(
    tiles: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, groups: int, per_unit: int
) -> torch.Tensor:
    """Convolve (U, C, T, T) tiles without padding into unit-major rows; `per_unit` is the input sites per unit
    side, and the output must keep unit alignment (per_unit / stride sites per side)."""
    out = F.conv2d(tiles, weight, bias, stride=stride, groups=groups)
    expected = per_unit // stride
    if out.shape[-1] != expected:
        raise ValueError(f"kernel {tuple(weight.shape[-2:])}, stride {stride} on {tiles.shape[-1]}-site tiles do "
                         f"not keep unit alignment ({per_unit} sites per unit -> {out.shape[-1]}, not {expected})")
    return rows_from_tiles(out)


def tile_conv(
    x: torch.Tensor, sites: Sites, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int,
    groups: int = 1,
) -> torch.Tensor:
    """Convolve visible units as tiles; output rows are the visible sites at `stride` × the input stride."""
    return conv_tiles(gather_tiles(x, sites, padding), weight, bias, stride, groups, sites.per_unit)


def tile_max_pool(x: torch.Tensor, sites: Sites, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Max-pool visible units as tiles; masked and outside sites read as -inf."""
    tiles = gather_tiles(x, sites, padding, fill=float("-inf"))
    return rows_from_tiles(F.max_pool2d(tiles, kernel, stride))


def gather_conv(x: torch.Tensor, sites: Sites, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Stride-1 'same' conv as im2col over the neighbour table and one matmul."""
    out_channels, in_channels, kernel, _ = weight.shape
    padded = torch.cat([x, x.new_zeros(1, in_channels)])  # N+1, C: row N reads as zero
    columns = padded.index_select(0, sites.neighbours(kernel).reshape(-1)).view(sites.num, -1)  # N, k·k·C
    matrix = weight.permute(0, 2, 3, 1).reshape(out_channels, -1)  # C_out, k·k·C (same order as the columns)
    return F.linear(columns, matrix, bias)  # N, C_out


def dense_conv(
    x: torch.Tensor, sites: Sites, weight: torch.Tensor, bias: torch.Tensor | None, padding: int, groups: int = 1
) -> torch.Tensor:
    """Stride-1 conv on the zero-filled full grid, visible outputs gathered back to rows."""
    out = F.conv2d(scatter_dense(x, sites), weight, bias, padding=padding, groups=groups)  # B C_out H W
    return out.permute(0, 2, 3, 1).reshape(-1, weight.shape[0]).index_select(0, sites.flat)  # N, C_out


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1×1 conv or linear layer: one matmul on the rows."""
    return F.linear(x, weight.reshape(weight.shape[0], -1), bias)
