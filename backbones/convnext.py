"""timm ConvNeXt and ConvNeXt-V2 (patch stem, depthwise blocks, GRN) on masked images, sparse or masked-dense."""

import timm
import torch
from timm.models.convnext import ConvNeXtBlock
from torch import nn

from hiermae.backbones.family import MMBackbone, staged_block_id, timm_features_backbone, unknown_parameter
from hiermae.backbones.site_encoder import SiteEncoder
from hiermae.sparse import Engine, FeatureMap
from hiermae.utils import ENCODERS


@ENCODERS.register_module()
class ConvNeXtEncoder(SiteEncoder):
    """Outputs of stages 0..3 (strides 4, 8, 16, 32). The smallest input is one 32-px unit.

    The classifier head (including its norm) is dropped, so `timm_state_dict()` is timm's state dict minus `head.*`.
    """

    family = "convnext"
    examples = "convnext_atto, convnext_tiny, convnext_base, convnextv2_atto, convnextv2_tiny"
    name_pattern = r"convnext(v2)?_(atto|femto|pico|nano|tiny|small|base|large|xlarge|huge)"
    head_modules = ("head",)  # its pre-logits norm included
    # Our choice, as for Swin (SimMIM fine-tunes Swin-B with 0.9; Xie et al. 2022, appendix): ConvNeXt-atto has
    # Swin-T's 12 blocks.
    finetune_layer_decay = 0.9
    # ResNet-18's, chosen on the validation split; ConvNeXt-atto fine-tunes above its probe with it.
    finetune_base_lr = 1e-2

    def __init__(self, name: str, *, sparse: bool = True, input_size: int = 224, in_chans: int = 3) -> None:
        super().__init__(name, sparse=sparse, input_size=input_size, in_chans=in_chans)
        self.model = self.drop_head(timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans))
        check_plain_convnext(self.model)
        self.out_channels = [info["num_chs"] for info in self.model.feature_info]
        self.out_strides = [4, 8, 16, 32]

    def walk(self, engine: Engine, images: torch.Tensor) -> list[torch.Tensor]:
        stem_conv, stem_norm = self.model.stem
        x = engine.layer_norm(engine.stem(images, stem_conv), stem_norm)
        outputs = []
        for stage in self.model.stages:
            if not isinstance(stage.downsample, nn.Identity):
                norm, conv = stage.downsample
                x = engine.conv(engine.layer_norm(x, norm), conv)
            for block in stage.blocks:
                x = convnext_block(engine, block, x)
            outputs.append(engine.dense(x))
        return outputs

    @classmethod
    def lr_layer_count(cls, model: nn.Module) -> int:
        """Layer-wise lr decay counts every ConvNeXt block as a layer (12 for atto)."""
        return sum(len(stage.blocks) for stage in model.stages)

    @classmethod
    def lr_layer_id(cls, model: nn.Module, name: str) -> int:
        """0 for the stem, 1..N for the blocks in order (a stage's downsampling shares its first block's id),
        N + 1 for the classifier head (its norm included)."""
        block = staged_block_id(name, "stages", [len(stage.blocks) for stage in model.stages])
        if block is not None:
            return block
        if name.startswith("stem."):
            return 0
        if name.startswith("head."):
            return cls.lr_layer_count(model) + 1
        raise unknown_parameter(cls.family, name)

    @classmethod
    def mm_backbone(cls, name: str) -> MMBackbone:
        """hiermae's `TimmBackbone` (neither mmdet nor mmseg ships a ConvNeXt), which holds timm's model as is."""
        return timm_features_backbone(name)


def convnext_block(engine: Engine, block: ConvNeXtBlock, x: FeatureMap) -> FeatureMap:
    """Depthwise conv, LayerNorm, MLP (with GRN in V2), layer scale and residual, as timm computes them."""
    mlp = block.mlp
    y = engine.layer_norm(engine.conv(x, block.conv_dw), block.norm)
    y = engine.act(engine.linear(y, mlp.fc1), mlp.act)
    if hasattr(mlp, "grn"):
        y = engine.grn(y, mlp.grn)
    y = engine.linear(y, mlp.fc2)
    if block.gamma is not None:
        y = engine.scale(y, block.gamma)
    return engine.add(y, x)


def check_plain_convnext(model: nn.Module) -> None:
    """Raise for timm ConvNeXt options the masked engines do not implement (overlapping stems, dropout, ...)."""
    if len(model.stem) != 2 or not isinstance(model.stem[1], nn.LayerNorm):
        raise NotImplementedError("only the patchify stem (conv + LayerNorm) is supported")
    for stage in model.stages:
        for block in stage.blocks:
            mlp = block.mlp
            plain = (
                isinstance(block.norm, nn.LayerNorm)
                and isinstance(block.shortcut, nn.Identity)
                and isinstance(block.drop_path, nn.Identity)
                and isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity)
                and mlp.drop1.p == 0
                and mlp.drop2.p == 0
            )
            if not plain:
                raise NotImplementedError("unsupported ConvNeXt block options (norm, shortcut, drop path or dropout)")
