"""ViT adapter: MAE token dropping (sparse) and SimMIM mask tokens (dense reference) on timm's ViT."""

import timm
import torch
from timm.layers import trunc_normal_
from torch import nn

from hiermae.backbones.base import MaskedEncoder, zero_masked
from hiermae.masks import MaskPyramid
from hiermae.registry import ENCODERS


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

    def __init__(self, name: str, *, sparse: bool = True, input_size: int = 224) -> None:
        super().__init__(name, sparse=sparse, input_size=input_size)
        self.model = timm.create_model(name, pretrained=False, num_classes=0, img_size=input_size)
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

    def forward(self, images: torch.Tensor, visible: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(images, visible)
        stride = self.out_strides[0]
        token_visible = MaskPyramid(visible, self.mask_unit).at(stride)
        batch, height, width = token_visible.shape
        tokens = self.model.patch_embed(images)
        keep = token_visible.flatten(1)
        if self.sparse:
            counts = keep.sum(1)
            if not bool((counts == counts[0]).all()):
                raise ValueError("ViT token dropping needs the same number of visible units in every sample")
            tokens = (tokens + self.patch_position_embedding())[keep].view(batch, int(counts[0]), -1)
            visible_tokens = self.run_blocks(tokens)
            dense = visible_tokens.new_zeros(batch, height * width, visible_tokens.shape[-1])
            dense[keep] = visible_tokens.reshape(-1, visible_tokens.shape[-1])
        else:
            tokens = torch.where(keep.unsqueeze(-1), tokens, self.mask_token.to(tokens.dtype))
            dense = self.run_blocks(tokens + self.patch_position_embedding())
        maps = dense.transpose(1, 2).reshape(batch, -1, height, width)
        return [zero_masked(maps, token_visible)]
