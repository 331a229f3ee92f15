"""Swin adapter: attention among visible tokens only (sparse) or SimMIM mask tokens (dense reference) on timm Swin."""

from dataclasses import dataclass
from typing import Any

import timm
import torch
from timm.layers import trunc_normal_
from torch import nn

from hiermae.backbones.base import MaskedEncoder, check_divisible, zero_masked
from hiermae.backbones.swin_sparse import (
    TokenSites,
    embed_visible_patches,
    merge_children,
    merge_visible_patches,
    sparse_block,
)
from hiermae.backbones.swin_windows import WindowGeometry, WindowPacking, pack_windows, to_device
from hiermae.masks import MaskPyramid
from hiermae.registry import ENCODERS


@dataclass(frozen=True)
class StagePlan:
    """Where one stage computes: its visible sites, the 2×2 children each merges (None for the first stage), and
    the packed attention groups of each window geometry its blocks use."""

    sites: TokenSites
    children: torch.Tensor | None
    packing_of: dict[WindowGeometry, WindowPacking]
    block_geometries: list[WindowGeometry]

    @property
    def packings(self) -> list[WindowPacking]:
        """The packing of each block; blocks with equal windows share one."""
        return [self.packing_of[geometry] for geometry in self.block_geometries]


@ENCODERS.register_module()
class SwinEncoder(MaskedEncoder):
    """timm `SwinTransformer` (V1); returns the outputs of stages 0..3 (strides 4, 8, 16, 32), NCHW.

    sparse=True: only visible tokens are embedded and processed. A token attends to the visible tokens of its
    (shifted) window and region exactly as in Swin's shifted-window attention mask, with the relative position
    bias looked up from token coordinates; the groups are packed into equal-size bins (GreenMIM's idea). Patch
    merging sees complete 2×2 groups since mask units align with every stride. Where timm zero-pads the grid
    to whole windows (inputs whose grids are not multiples of the window), the padding tokens take part as in timm.
    sparse=False: a learned mask token replaces masked patch embeddings and timm's stages run unchanged (SimMIM).
    With nothing masked both equal timm's Swin on the same weights. Window sizes are set for `input_size` (timm
    clamps them to small grids); other input sizes run with those windows (timm's `strict_img_size=False`).
    The final norm (`model.norm`), which timm applies only after the last stage, is not part of the stage outputs
    (as in timm's `features_only`).
    Extra keyword arguments (e.g. `window_size`, `embed_dim`) go to `timm.create_model`.
    """

    family = "swin"
    examples = "swin_tiny_patch4_window7_224, swin_small_patch4_window7_224, swin_base_patch4_window7_224"
    name_pattern = r"swin_(tiny|small|base|large)_patch4_window\d+_\d+"

    def __init__(self, name: str, *, sparse: bool = True, input_size: int = 224, **timm_kwargs: Any) -> None:
        super().__init__(name, sparse=sparse, input_size=input_size)
        check_divisible((input_size, input_size), self.mask_unit)
        timm_kwargs.setdefault("strict_img_size", False)  # other sizes run with the windows set for input_size
        self.model = timm.create_model(name, pretrained=False, num_classes=0, img_size=input_size, **timm_kwargs)
        self.out_channels = [info["num_chs"] for info in self.model.feature_info]
        self.out_strides = [info["reduction"] for info in self.model.feature_info]
        if self.out_strides[-1] != self.mask_unit:
            raise ValueError(
                f"{name}: last stage stride {self.out_strides[-1]} must equal the mask unit {self.mask_unit}"
            )
        if not sparse:
            self.mask_token = nn.Parameter(torch.zeros(self.out_channels[0]))
            trunc_normal_(self.mask_token, std=0.02)

    def forward(self, images: torch.Tensor, visible: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(images, visible)
        pyramid = MaskPyramid(visible, self.mask_unit)
        return self.forward_sparse(images, pyramid) if self.sparse else self.forward_dense(images, pyramid)

    def forward_dense(self, images: torch.Tensor, pyramid: MaskPyramid) -> list[torch.Tensor]:
        """SimMIM: mask token at masked patch embeddings, every token through timm's stages, masked outputs zeroed."""
        tokens = self.model.patch_embed(images)  # B×H×W×C
        keep = pyramid.at(self.out_strides[0]).unsqueeze(-1)
        tokens = torch.where(keep, tokens, self.mask_token.to(tokens.dtype))
        outputs = []
        for stage, stride in zip(self.model.layers, self.out_strides, strict=True):
            tokens = stage(tokens)
            outputs.append(zero_masked(tokens.permute(0, 3, 1, 2), pyramid.at(stride)))
        return outputs

    def forward_sparse(self, images: torch.Tensor, pyramid: MaskPyramid) -> list[torch.Tensor]:
        """Visible tokens only, stage by stage, following `plan`."""
        plans = self.plan(pyramid)
        tokens = embed_visible_patches(self.model.patch_embed, images, plans[0].sites)
        outputs = []
        for stage, plan in zip(self.model.layers, plans, strict=True):
            if plan.children is not None:
                tokens = merge_visible_patches(stage.downsample, tokens, plan.children)
            for block, packing in zip(stage.blocks, plan.packings, strict=True):
                tokens = sparse_block(block, tokens, plan.sites, packing)
            outputs.append(plan.sites.scatter(tokens))
        return outputs

    def plan(self, pyramid: MaskPyramid) -> list[StagePlan]:
        """The plan of every stage, built on the host and sent to the mask's device in one copy.

        Built on the device, every data-dependent shape in it (visible sites, group sizes steering the packing)
        would make the host wait for the device; from a CPU copy of the small unit mask it waits once.
        """
        return to_device(self.host_plan(pyramid.visible.cpu()), pyramid.visible.device)

    def host_plan(self, visible: torch.Tensor) -> list[StagePlan]:
        """Sites, merge children and packed attention groups of every stage for a B×h×w visible map on the CPU;
        each window geometry is packed once per stage and shared by the blocks that use it."""
        pyramid = MaskPyramid(visible, self.mask_unit)
        plans, previous = [], None
        for stage, stride in zip(self.model.layers, self.out_strides, strict=True):
            sites = TokenSites.of(pyramid.at(stride))
            merges = not isinstance(stage.downsample, nn.Identity)
            children = merge_children(previous, sites) if merges else None
            geometries = [geometry_of(block, sites) for block in stage.blocks]
            packing_of = {}
            for block, geometry in zip(stage.blocks, geometries, strict=True):
                if geometry not in packing_of:
                    index = block.attn.relative_position_index
                    packing_of[geometry] = pack_windows(sites.coordinates, len(visible), geometry, index)
            plans.append(StagePlan(sites, children, packing_of, geometries))
            previous = sites
        return plans

    def padding_overhead(self, visible: torch.Tensor) -> float:
        """Fraction of packed attention slots holding no token, over all blocks, for a B×h×w visible map."""
        packings = [packing for plan in self.plan(MaskPyramid(visible, self.mask_unit)) for packing in plan.packings]
        slots = sum(packing.num_bins * packing.capacity for packing in packings)
        return 1.0 - sum(packing.num_filled for packing in packings) / slots


def geometry_of(block: nn.Module, sites: TokenSites) -> WindowGeometry:
    """The window partition a timm SwinTransformerBlock applies to the grid of `sites`."""
    return WindowGeometry(tuple(sites.shape[1:]), tuple(block.window_size), tuple(block.shift_size))
