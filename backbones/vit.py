"""ViT adapter: MAE token dropping (sparse) and SimMIM mask tokens (dense reference) on timm's ViT."""

from dataclasses import dataclass
from types import MappingProxyType

import timm
import torch
from timm.layers import trunc_normal_
from torch import nn

from hiermae.backbones.base import MaskedEncoder, zero_masked
from hiermae.backbones.family import numbered, unknown_parameter
from hiermae.masking import MaskPyramid
from hiermae.utils import ENCODERS


@dataclass(frozen=True)
class KeptTokens:
    """Builds the ViT plan on the host: the (B, n) row-major positions of each sample's visible tokens."""

    unit: int
    patch: int

    def __call__(self, visible: torch.Tensor) -> torch.Tensor:
        keep = MaskPyramid(visible, self.unit).at(self.patch).flatten(1)  # B, H·W
        counts = keep.sum(1)
        if not bool((counts == counts[0]).all()):
            raise ValueError(
                "ViT token dropping needs the same number of visible units in every sample, got "
                f"{sorted(set((counts // (self.unit // self.patch) ** 2).tolist()))}"
            )
        return keep.nonzero()[:, 1].view(keep.shape[0], int(counts[0]))

    def calibrated(self, examples: list[torch.Tensor]) -> "KeptTokens":
        """Itself: the plan's shape follows from the number of visible units alone."""
        return self


@ENCODERS.register_module()
class MaskedViT(MaskedEncoder):
    """timm `VisionTransformer`; the 32-px mask unit covers (32/patch)² tokens so every backbone shares masks.

    sparse=True: only visible tokens (plus the class token) enter the blocks (MAE, He et al. 2022); every sample
    must keep the same number of units, which all hiermae mask generators guarantee.
    sparse=False: a learned mask token replaces masked patch embeddings and all tokens are processed (SimMIM).
    Returns one map at the patch stride, zero at masked sites.
    """

    family = "vit"
    examples = "vit_tiny_patch16_224, vit_small_patch16_224, vit_base_patch16_224"
    name_pattern = r"vit_(tiny|small|base|large)_patch(8|16|32)_(224|384)"
    head_modules = ("head",)
    sized_by_input = True  # the position table follows the image size
    # The classifier reads the average of the patch tokens, not the class token, as MAE fine-tunes (He et al. 2022);
    # the pretrained final norm stays in place (fc_norm=False adds no fresh norm after pooling).
    classifier_options = MappingProxyType({"global_pool": "avg", "fc_norm": False})
    # MAE fine-tunes ViT-B with 0.65 and ViT-L with 0.75 (He et al. 2022, A.2). Here 0.9, the rate of the other
    # 12-block families (ConvNeXt-atto, Swin-T): on the validation split a pretrained ViT-T fine-tuned to 66.0 % at
    # 0.75, 68.3 % at 0.9 and 63.2 % at 1 (no decay) (docs/results/finetune-diagnosis-cpu.md).
    finetune_layer_decay = 0.9
    # Chosen on the validation split with random init as the baseline (docs/results/finetune-diagnosis-cpu.md): a
    # random-init ViT-T fine-tuned to 57.0 % at 1e-3, 59.8 % at 2.5e-3 and 53.9 % at ResNet-18's 1e-2.
    finetune_base_lr = 2.5e-3

    def __init__(self, name: str, *, sparse: bool = True, input_size: int = 224, in_chans: int = 3) -> None:
        super().__init__(name, sparse=sparse, input_size=input_size, in_chans=in_chans)
        self.model = timm.create_model(name, pretrained=False, num_classes=0, img_size=input_size, in_chans=in_chans)
        patch = self.model.patch_embed.patch_size[0]
        self.out_channels = [self.model.embed_dim]
        self.out_strides = [patch]
        if not sparse:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, self.model.embed_dim))
            trunc_normal_(self.mask_token, std=0.02)

    def prefix_tokens(self, batch: int) -> torch.Tensor:
        """Class/register tokens with their position embedding, as timm adds them."""
        model = self.model
        parts = [t.expand(batch, -1, -1) for t in (model.cls_token, model.reg_token) if t is not None]
        prefix = torch.cat(parts, dim=1)
        if not model.no_embed_class:
            prefix = prefix + model.pos_embed[:, : model.num_prefix_tokens]
        return prefix

    def patch_position_embedding(self) -> torch.Tensor:
        model = self.model
        return model.pos_embed if model.no_embed_class else model.pos_embed[:, model.num_prefix_tokens :]

    def run_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prefix tokens + patch tokens through timm's blocks; returns the normed patch tokens."""
        model = self.model
        tokens = torch.cat([self.prefix_tokens(tokens.shape[0]), tokens], dim=1)
        tokens = model.norm(model.blocks(model.norm_pre(model.patch_drop(model.pos_drop(tokens)))))
        return tokens[:, model.num_prefix_tokens :]

    def sparse_planner(self, device_type: str) -> KeptTokens:
        return KeptTokens(self.mask_unit, self.out_strides[0])

    def encode(self, images: torch.Tensor, visible: torch.Tensor, plan: torch.Tensor | None) -> list[torch.Tensor]:
        token_visible = MaskPyramid(visible, self.mask_unit).at(self.out_strides[0])
        batch, height, width = token_visible.shape
        tokens = self.model.patch_embed(images)  # B, H·W, C
        if self.sparse:
            kept = plan.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])  # B, n, C
            visible_tokens = self.run_blocks((tokens + self.patch_position_embedding()).gather(1, kept))
            dense = visible_tokens.new_zeros(batch, height * width, visible_tokens.shape[-1])
            dense = dense.scatter(1, kept, visible_tokens)
        else:
            keep = token_visible.flatten(1).unsqueeze(-1)
            tokens = torch.where(keep, tokens, self.mask_token.to(tokens.dtype))
            dense = self.run_blocks(tokens + self.patch_position_embedding())
        maps = dense.transpose(1, 2).reshape(batch, -1, height, width)
        return [zero_masked(maps, token_visible)]

    @classmethod
    def lr_layer_count(cls, model: nn.Module) -> int:
        """Layer-wise lr decay counts every transformer block as a layer (12 for ViT-T)."""
        return len(model.blocks)

    @classmethod
    def lr_layer_id(cls, model: nn.Module, name: str) -> int:
        """0 for the patch embedding, position embedding and prefix tokens, i + 1 for block i, N + 1 for the final
        norms and the classifier head."""
        block = numbered(name, "blocks.")
        if block is not None:
            return block + 1
        if name.startswith(("patch_embed.", "pos_embed", "cls_token", "reg_token", "norm_pre.")):
            return 0
        if name.startswith(("norm.", "fc_norm.", "head.", "attn_pool.")):
            return cls.lr_layer_count(model) + 1
        raise unknown_parameter(cls.family, name)

    @classmethod
    def pooled_features(cls, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """The average of timm ViT's normed patch tokens (B×N×C with the prefix tokens first)."""
        return model.forward_features(images)[:, model.num_prefix_tokens :].mean(dim=1)
