"""Visible sites of a unit-aligned mask at one stride, and the gather tables that every layer of a stage shares.

Sites are stored unit-major: all sites of the first visible unit (row-major inside the unit), then the next unit.
With this order a stage's features `(N, C)` reshape for free into per-unit tiles `(U, u, u, C)`, a stride-2
layer's output is again unit-major at the coarser stride, and the tables below are built once per batch and stride.

Every table's shape depends only on the number of visible units U (fixed per batch by the exact-count mask
generators), never on which units are visible. `SitePlan` holds the units and the tables a sparse CNN will ask
for, built on the host (`build_site_plan`), so the device computes no table and never waits for the host.
"""

from dataclasses import dataclass, field

import torch

from hiermae.masking import MaskPyramid

TableKey = tuple[int, str, int]  # (stride, table name, parameter): e.g. (8, "tiles", 1), (4, "neighbours", 3)


class Sites:
    """The visible sites at one stride: `u×u` sites for each visible mask unit (`u` = unit / stride)."""

    def __init__(
        self,
        units: torch.Tensor,
        batch_size: int,
        unit_grid: tuple[int, int],
        per_unit: int,
        tables: dict[tuple[str, int], torch.Tensor] | None = None,
    ) -> None:
        self.units = units  # (U, 3) long: batch, unit row, unit column of every visible unit
        self.batch_size = batch_size
        self.unit_grid = unit_grid
        self.per_unit = per_unit
        self._tables: dict[tuple[str, int], torch.Tensor] = dict(tables or {})  # prebuilt on the host, or lazy
        self.cache: dict[str, object] = {}  # backend state shared by the layers of a stage (e.g. spconv pairs)

    def built_tables(self) -> list[tuple[str, int]]:
        """(name, parameter) of the tables held so far."""
        return list(self._tables)

    def table(self, name: str, parameter: int) -> torch.Tensor:
        """The table `name` ("index", "batch", "flat", "lookup", "tiles", "neighbours") for `parameter`."""
        if name == "index":
            return self.index
        if name == "batch":
            return self.batch
        if name == "flat":
            return self.flat
        return getattr(self, name)(parameter)

    @property
    def num_units(self) -> int:
        return self.units.shape[0]

    @property
    def num(self) -> int:
        """Number of visible sites N."""
        return self.num_units * self.per_unit**2

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the full grid at this stride."""
        return self.unit_grid[0] * self.per_unit, self.unit_grid[1] * self.per_unit

    @property
    def index(self) -> torch.Tensor:
        """(N, 3) long: batch, row, column of every site, unit-major."""
        if ("index", 0) not in self._tables:
            u = self.per_unit
            local = torch.arange(u, device=self.units.device)
            rows = (self.units[:, 1:2] * u + local.repeat_interleave(u)).reshape(-1)  # U, u·u -> N: 0 0 .. 1 1 ..
            cols = (self.units[:, 2:3] * u + local.repeat(u)).reshape(-1)  # U, u·u -> N: 0 1 .. 0 1 ..
            batch = self.units[:, 0].repeat_interleave(u * u)  # N
            self._tables[("index", 0)] = torch.stack([batch, rows, cols], 1)  # N, 3
        return self._tables[("index", 0)]

    @property
    def batch(self) -> torch.Tensor:
        """(N,) long: the sample each site belongs to."""
        if ("batch", 0) not in self._tables:
            self._tables[("batch", 0)] = self.units[:, 0].repeat_interleave(self.per_unit**2)  # N
        return self._tables[("batch", 0)]

    @property
    def flat(self) -> torch.Tensor:
        """(N,) long: position of every site in a row-major B×H×W grid."""
        if ("flat", 0) not in self._tables:
            height, width = self.shape
            b, y, x = self.index.unbind(1)  # each (N,)
            self._tables[("flat", 0)] = (b * height + y) * width + x  # N
        return self._tables[("flat", 0)]

    def lookup(self, halo: int) -> torch.Tensor:
        """B×(H+2·halo)×(W+2·halo) long: the site id at every grid position, N (the padding row) elsewhere."""
        if ("lookup", halo) not in self._tables:
            height, width = self.shape
            table = torch.full(
                (self.batch_size, height + 2 * halo, width + 2 * halo), self.num, dtype=torch.long,
                device=self.units.device,
            )
            b, y, x = self.index.unbind(1)  # each (N,)
            table[b, y + halo, x + halo] = torch.arange(self.num, device=table.device)  # B, H+2h, W+2h
            self._tables[("lookup", halo)] = table
        return self._tables[("lookup", halo)]

    def tiles(self, halo: int) -> torch.Tensor:
        """(U, T·T) long, T = u + 2·halo: the rows of each unit's tile with a `halo`-site border (N = outside)."""
        if ("tiles", halo) not in self._tables:
            size = self.per_unit + 2 * halo
            offsets = torch.arange(size, device=self.units.device)
            rows = self.units[:, 1:2] * self.per_unit + offsets  # U, T in padded coordinates: tile starts at -halo
            cols = self.units[:, 2:3] * self.per_unit + offsets  # U, T
            batch = self.units[:, 0, None, None]  # U 1 1
            table = self.lookup(halo)[batch, rows[:, :, None], cols[:, None, :]]  # U T T
            self._tables[("tiles", halo)] = table.reshape(self.num_units, size * size)  # U, T·T
        return self._tables[("tiles", halo)]

    def neighbours(self, kernel: int) -> torch.Tensor:
        """(N, k·k) long: the rows of each site's k×k neighbourhood (centred, N = masked or outside)."""
        if ("neighbours", kernel) not in self._tables:
            halo = kernel // 2
            offsets = torch.arange(kernel, device=self.units.device)
            b, y, x = self.index.unbind(1)
            rows = (y[:, None] + offsets)[:, :, None]  # N k 1 (padded coordinates: the window starts at -halo)
            cols = (x[:, None] + offsets)[:, None, :]  # N 1 k
            table = self.lookup(halo)[b[:, None, None], rows, cols]  # N k k
            self._tables[("neighbours", kernel)] = table.reshape(self.num, kernel * kernel)  # N, k·k
        return self._tables[("neighbours", kernel)]


@dataclass(frozen=True)
class SitePlan:
    """A batch's visible units and the site tables a sparse CNN reads, built on the host (`build_site_plan`)."""

    units: torch.Tensor  # (U, 3) long: batch, unit row, unit column of every visible unit, row-major
    tables: dict[TableKey, torch.Tensor] = field(default_factory=dict)


def visible_units(visible: torch.Tensor) -> torch.Tensor:
    """(U, 3) long, row-major: the visible units of a B×h×w map (on a GPU this waits for the device)."""
    return visible.nonzero().contiguous()


def build_site_plan(visible: torch.Tensor, unit: int, manifest: frozenset[TableKey]) -> SitePlan:
    """The units of a B×h×w visible map and every table named in `manifest`, computed where `visible` lives
    (the CPU, for a plan that the device never waits for)."""
    pyramid = SitePyramid(visible, unit)
    tables = {key: pyramid.at(key[0]).table(key[1], key[2]) for key in sorted(manifest)}
    return SitePlan(pyramid.units, tables)


class SitePyramid:
    """The visible sites at every stride of one batch's mask; tables come from `plan`, or are built lazily."""

    def __init__(self, visible: torch.Tensor, unit: int, plan: SitePlan | None = None) -> None:
        self.masks = MaskPyramid(visible, unit)
        self.unit = unit
        self.units = visible_units(visible) if plan is None else plan.units
        self._prebuilt: dict[int, dict[tuple[str, int], torch.Tensor]] = {}
        for (stride, name, parameter), table in (plan.tables if plan is not None else {}).items():
            self._prebuilt.setdefault(stride, {})[(name, parameter)] = table
        self._levels: dict[int, Sites] = {}

    def table_keys(self) -> list[TableKey]:
        """(stride, name, parameter) of every table built or supplied so far, except the intermediates that only
        serve to build others (`index`, `lookup`)."""
        return [
            (stride, name, parameter)
            for stride, sites in self._levels.items()
            for name, parameter in sites.built_tables()
            if name not in ("index", "lookup")
        ]

    def at(self, stride: int) -> Sites:
        """The sites at `stride` (a divisor of the mask unit; 1 means pixels)."""
        if stride not in self._levels:
            if self.unit % stride:
                raise ValueError(f"stride {stride} does not divide the mask unit {self.unit}")
            visible = self.masks.visible
            grid = (visible.shape[1], visible.shape[2])
            self._levels[stride] = Sites(
                self.units, visible.shape[0], grid, self.unit // stride, self._prebuilt.get(stride)
            )
        return self._levels[stride]
