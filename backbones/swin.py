"""Swin adapter: attention among visible tokens only (sparse) or SimMIM mask tokens (dense reference) on timm Swin."""

from dataclasses import dataclass, field, replace
from typing import Any

import timm
import torch
from timm.layers import trunc_normal_
from torch import nn

from hiermae.backbones.base import MaskedEncoder, check_divisible, zero_masked
from hiermae.backbones.family import MMBackbone, staged_block_id, unknown_parameter
from hiermae.backbones.swin_mm import swin_mm_arch, swin_to_mm
from hiermae.backbones.swin_sparse import (
    PackedMasks,
    PackedRows,
    TokenSites,
    embed_visible_patches,
    merge_children,
    merge_visible_patches,
    packed_masks,
    packed_rows,
    sparse_block,
)
from hiermae.backbones.swin_windows import WindowGeometry, WindowPacking, bin_budget, pack_windows
from hiermae.masking import MaskPyramid
from hiermae.utils import ENCODERS


@dataclass(frozen=True)
class StagePlan:
    """Where one stage computes: its visible sites, the 2×2 children each merges and their inverse (None for the
    first stage), the distinct packed attention layouts of its window geometries, and which of them each block
    uses. For a CPU step the plan also carries each packing's attention masks and gather rows, which a GPU step
    derives from the packings on the device (cheaper there than sending them)."""

    sites: TokenSites
    children: torch.Tensor | None
    child_slot: torch.Tensor | None  # (fine tokens,) each fine token's place in children.view(-1): the inverse
    packings: list[WindowPacking]
    block_packing: list[int]
    masks: list[PackedMasks] | None = None  # per packing, when derived on the host
    rows: list[PackedRows] | None = None


@dataclass(frozen=True)
class StageSpec:
    """What planning needs of one timm stage: its stride, whether it merges patches, each block's window/shift."""

    stride: int
    merges: bool
    heads: int
    blocks: tuple[tuple[tuple[int, int], tuple[int, int]], ...]  # (window, shift) per block


@dataclass(frozen=True)
class SwinPlanner:
    """Builds the sparse Swin's plan on the host (picklable: data-loader workers hold it).

    With `share_masks` (set by `calibrated` when the example batches share one mask per batch, as the
    `batch_shared` generator draws them), one sample is planned and its packing serves every sample
    (`WindowPacking.samples`); otherwise every sample is packed together. The choice is fixed per planner, not per
    batch, so that random masks which happen to coincide do not change the step's shapes.
    Each packing is padded to a fixed number of bins, so the step's shapes do not depend on the mask: the budgets
    measured on example masks (`calibrated`), or else `bin_budget`'s rule.
    With `derive_on_host` (planning for a CPU step) the plan also carries what attention derives from each
    packing (`packed_masks`, `packed_rows`), so data-loader workers build it ahead of the step.
    """

    unit: int
    stages: tuple[StageSpec, ...]
    position_index: dict[tuple[int, int], torch.Tensor]  # window size -> timm's relative_position_index
    budgets: dict[tuple[int, WindowGeometry], int] = field(default_factory=dict)  # (stage, geometry) -> bins
    exact: bool = False  # pack into as few bins as needed (calibration)
    share_masks: bool = False  # plan one sample when all share a mask (set by `calibrated` for such generators)
    derive_on_host: bool = False

    def __call__(self, visible: torch.Tensor) -> list[StagePlan]:
        batch_size = visible.shape[0]
        shared = self.share_masks and batch_size > 1 and bool((visible == visible[:1]).all())
        pyramid = MaskPyramid(visible[:1] if shared else visible, self.unit)
        plans, previous = [], None
        for number, spec in enumerate(self.stages):
            sites = TokenSites.of(pyramid.at(spec.stride))
            children = merge_children(previous, sites) if spec.merges else None
            child_slot = None if children is None else inverse_permutation(children.view(-1))
            geometries = [WindowGeometry(tuple(sites.shape[1:]), window, shift) for window, shift in spec.blocks]
            distinct = list(dict.fromkeys(geometries))
            packings = [self.pack(number, sites, geometry) for geometry in distinct]
            plans.append(StagePlan(sites, children, child_slot, packings, [distinct.index(g) for g in geometries]))
            previous = sites
        if shared:
            plans = [share_plan(plan, plans[i - 1].sites if i else None, batch_size) for i, plan in enumerate(plans)]
        if not self.derive_on_host:
            return plans
        return [
            replace(plan, masks=[packed_masks(packing, by_matmul=False) for packing in plan.packings],
                    rows=[packed_rows(packing, spec.heads) for packing in plan.packings])
            for plan, spec in zip(plans, self.stages, strict=True)
        ]  # fmt: skip

    def pack(self, stage: int, sites: TokenSites, geometry: WindowGeometry) -> WindowPacking:
        """The packing of one stage's geometry, padded to its budget."""
        index = self.position_index[geometry.window]
        if self.exact:
            return pack_windows(sites.coordinates, sites.shape[0], geometry, index)
        budget = self.budgets.get((stage, geometry))
        if budget is None:
            (padded_h, padded_w), (height, width) = geometry.padded_grid, geometry.grid
            max_tokens = len(sites.batch) + sites.shape[0] * (padded_h * padded_w - height * width)
            budget = bin_budget(max_tokens, geometry.window_area)
        return pack_windows(sites.coordinates, sites.shape[0], geometry, index, budget)

    def calibrated(self, examples: list[torch.Tensor]) -> "SwinPlanner":
        """This planner with each packing's budget set from example visible maps (batches drawn by the training
        mask generator at the training batch size): the most bins any example needed, plus 2 % and 2 bins."""
        share = all(len(visible) > 1 and bool((visible == visible[:1]).all()) for visible in examples)
        exact, needed = replace(self, exact=True, share_masks=share, derive_on_host=False), {}
        for visible in examples:
            for number, plan in enumerate(exact(visible)):
                for packing in plan.packings:
                    key = (number, packing.geometry)
                    needed[key] = max(needed.get(key, 0), packing.num_bins)
        budgets = {key: bins + 2 + -(-bins // 50) for key, bins in needed.items()}
        return replace(self, budgets=budgets, share_masks=share)


def inverse_permutation(index: torch.Tensor) -> torch.Tensor:
    """The position of each value 0..n-1 in the permutation `index`."""
    inverse = torch.empty_like(index)
    inverse[index] = torch.arange(len(index), device=index.device)
    return inverse


def share_plan(plan: StagePlan, fine: TokenSites | None, batch_size: int) -> StagePlan:
    """A one-sample stage plan extended to `batch_size` samples with the same mask: sites and merge children
    repeated per sample (tokens of each sample follow each other), packings marked as serving every sample."""
    sites = plan.sites
    count = len(sites.batch)  # tokens of the one planned sample
    samples = torch.arange(batch_size)
    batch_sites = TokenSites(
        (batch_size, *sites.shape[1:]), samples.repeat_interleave(count), sites.ys.repeat(batch_size),
        sites.xs.repeat(batch_size),
    )  # fmt: skip
    children = child_slot = None
    if plan.children is not None:
        offsets = samples * len(fine.batch)  # the first fine token of each sample
        children = (plan.children.unsqueeze(0) + offsets.view(-1, 1, 1)).reshape(-1, plan.children.shape[1])  # B·N, 4
        child_slot = (plan.child_slot + plan.children.numel() * samples.view(-1, 1)).view(-1)  # B·4N
    packings = [replace(packing, samples=batch_size) for packing in plan.packings]
    return StagePlan(batch_sites, children, child_slot, packings, plan.block_packing)


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
    head_modules = ("head",)
    sized_by_input = True  # window sizes and bias tables follow the image size
    finetune_layer_decay = 0.9  # SimMIM fine-tunes Swin-B with 0.9 (Xie et al. 2022, appendix)
    # Chosen on the validation split (docs/results/finetune-diagnosis-cpu.md): at ResNet-18's 1e-2 every pretrained
    # Swin-T fine-tune collapsed to a uniform guess; at 1e-3 random init reaches 76.0 % without collapsing.
    finetune_base_lr = 1e-3

    def __init__(
        self, name: str, *, sparse: bool = True, input_size: int = 224, in_chans: int = 3, **timm_kwargs: Any
    ) -> None:
        super().__init__(name, sparse=sparse, input_size=input_size, in_chans=in_chans)
        check_divisible((input_size, input_size), self.mask_unit)
        timm_kwargs.setdefault("strict_img_size", False)  # other sizes run with the windows set for input_size
        self.model = timm.create_model(
            name, pretrained=False, num_classes=0, img_size=input_size, in_chans=in_chans, **timm_kwargs
        )
        self.out_channels = [info["num_chs"] for info in self.model.feature_info]
        self.out_strides = [info["reduction"] for info in self.model.feature_info]
        if self.out_strides[-1] != self.mask_unit:
            raise ValueError(
                f"{name}: last stage stride {self.out_strides[-1]} must equal the mask unit {self.mask_unit}"
            )
        if not sparse:
            self.mask_token = nn.Parameter(torch.zeros(self.out_channels[0]))
            trunc_normal_(self.mask_token, std=0.02)

    def encode(self, images: torch.Tensor, visible: torch.Tensor, plan: list[StagePlan] | None) -> list[torch.Tensor]:
        if self.sparse:
            return self.forward_sparse(images, plan)
        return self.forward_dense(images, MaskPyramid(visible, self.mask_unit))

    def forward_dense(self, images: torch.Tensor, pyramid: MaskPyramid) -> list[torch.Tensor]:
        """SimMIM: mask token at masked patch embeddings, every token through timm's stages, masked outputs zeroed."""
        tokens = self.model.patch_embed(images)  # B×H×W×C
        keep = pyramid.at(self.out_strides[0]).unsqueeze(-1)  # B H W 1
        tokens = torch.where(keep, tokens, self.mask_token.to(tokens.dtype))
        outputs = []
        for stage, stride in zip(self.model.layers, self.out_strides, strict=True):
            tokens = stage(tokens)
            outputs.append(zero_masked(tokens.permute(0, 3, 1, 2), pyramid.at(stride)))
        return outputs

    def forward_sparse(self, images: torch.Tensor, plans: list[StagePlan]) -> list[torch.Tensor]:
        """Visible tokens only, stage by stage, following the host-built `plans`."""
        by_matmul = images.is_cuda  # see packed_bias_by_matmul
        tokens = embed_visible_patches(self.model.patch_embed, images, plans[0].sites)  # N×C
        outputs = []
        for stage, plan in zip(self.model.layers, plans, strict=True):
            if plan.children is not None:
                tokens = merge_visible_patches(stage.downsample, tokens, plan.children, plan.child_slot)
            masks = plan.masks or [packed_masks(packing, by_matmul) for packing in plan.packings]
            rows = plan.rows or [packed_rows(packing, stage.blocks[0].attn.num_heads) for packing in plan.packings]
            for block, which in zip(stage.blocks, plan.block_packing, strict=True):
                tokens = sparse_block(block, tokens, plan.sites, plan.packings[which], masks[which], rows[which])
            outputs.append(plan.sites.scatter(tokens))
        return outputs

    def sparse_planner(self, device_type: str) -> SwinPlanner:
        stages, position_index = [], {}
        for stage, stride in zip(self.model.layers, self.out_strides, strict=True):
            blocks = []
            for block in stage.blocks:
                window, shift = tuple(block.window_size), tuple(block.shift_size)
                position_index.setdefault(window, block.attn.relative_position_index.detach().cpu())
                blocks.append((window, shift))
            merges, heads = not isinstance(stage.downsample, nn.Identity), stage.blocks[0].attn.num_heads
            stages.append(StageSpec(stride, merges, heads, tuple(blocks)))
        return SwinPlanner(self.mask_unit, tuple(stages), position_index, derive_on_host=device_type == "cpu")

    def padding_overhead(self, visible: torch.Tensor) -> float:
        """Fraction of packed attention slots holding no token, over all blocks, for a B×h×w visible map."""
        packings = [plan.packings[i] for plan in self.planner("cpu")(visible.cpu()) for i in plan.block_packing]
        slots = sum(packing.num_bins * packing.capacity for packing in packings)
        return 1.0 - sum(packing.num_filled for packing in packings) / slots

    @classmethod
    def lr_layer_count(cls, model: nn.Module) -> int:
        """Layer-wise lr decay counts every Swin block as a layer (12 for Swin-T)."""
        return sum(len(layer.blocks) for layer in model.layers)

    @classmethod
    def lr_layer_id(cls, model: nn.Module, name: str) -> int:
        """0 for the patch embedding, 1..N for the blocks in order (a stage's patch merging shares its first
        block's id), N + 1 for the final norm and the classifier head."""
        block = staged_block_id(name, "layers", [len(layer.blocks) for layer in model.layers])
        if block is not None:
            return block
        if name.startswith(("patch_embed.", "absolute_pos_embed")):
            return 0
        if name.startswith(("norm.", "head.")):
            return cls.lr_layer_count(model) + 1
        raise unknown_parameter(cls.family, name)

    @classmethod
    def pooled_features(cls, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """The average over H and W of timm Swin's final, normed, channels-last B×H×W×C map."""
        return model.forward_features(images).mean(dim=(1, 2))

    @classmethod
    def mm_backbone(cls, name: str) -> MMBackbone:
        """mmdet's / mmseg's own `SwinTransformer`. It derives its relative-position indices from its config and adds
        a norm on each output but the last (timm's final norm); its `init_weights` reads keys under `backbone.`."""
        return MMBackbone(
            dict(type="SwinTransformer", **swin_mm_arch(name), out_indices=(0, 1, 2, 3)),
            derived_keys=(r"relative_position_index$", r"^norm\d\."),
            file_prefix="backbone.",
        )

    @classmethod
    def mm_state_dict(cls, weights: dict[str, torch.Tensor], backbone_cfg: dict) -> dict[str, torch.Tensor]:
        return swin_to_mm(weights, tuple(backbone_cfg.get("out_indices", (0, 1, 2, 3))))
