"""timm MobileNetV3 and EfficientNet (inverted residuals, strided depthwise convs, squeeze-excite, hard-swish) on
masked images, sparse or masked-dense.

Squeeze-excite pools each sample over its visible sites only (`Engine.sample_means`), so a masked unit changes
no visible output, as GRN's norms do in ConvNeXt-V2; hard-swish, hard-sigmoid, SiLU and ReLU are elementwise.
"""

import timm
import torch
from timm.layers import BatchNormAct2d
from timm.models._efficientnet_blocks import ConvBnAct, DepthwiseSeparableConv, InvertedResidual, SqueezeExcite
from torch import nn

from hiermae.backbones.family import MMBackbone, nested_block_id, timm_features_backbone, unknown_parameter
from hiermae.backbones.site_encoder import SiteEncoder
from hiermae.sparse import Engine, FeatureMap
from hiermae.utils import ENCODERS

Block = ConvBnAct | DepthwiseSeparableConv | InvertedResidual


@ENCODERS.register_module()
class EfficientCNNEncoder(SiteEncoder):
    """Outputs of the block stages at strides 4, 8, 16, 32 (timm's `feature_info` minus the stride-2 stage).

    The classifier head (`conv_head`, EfficientNet's `bn2`, `classifier`) is dropped: it follows the global pool,
    so `timm_state_dict()` is timm's state dict minus those keys.
    """

    family = "efficient_cnn"
    examples = "mobilenetv3_large_100, mobilenetv3_large_075, efficientnet_b0, efficientnet_b1"
    name_pattern = r"mobilenetv3_large_(075|100)|efficientnet_b[0-3]"
    head_modules = ("conv_head", "bn2", "classifier")
    # Our choice: these models have 16 blocks (b1-b3: 23-26), so 0.92 puts the stem at 0.92^17 ≈ 0.24 of the head's
    # rate, where ConvNeXt-atto's 0.9 over its 12 blocks puts it (0.9^13 ≈ 0.25).
    finetune_layer_decay = 0.92
    finetune_base_lr = 1e-2  # ResNet-18's, chosen on the validation split (not measured for this family)

    def __init__(self, name: str, *, sparse: bool = True, input_size: int = 224, in_chans: int = 3) -> None:
        super().__init__(name, sparse=sparse, input_size=input_size, in_chans=in_chans)
        self.model = self.drop_head(timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans))
        check_plain_efficient_cnn(self.model)
        features = [info for info in self.model.feature_info if info["reduction"] >= 4]
        self.stage_outputs = [int(info["module"].split(".")[1]) for info in features]  # block stages that output
        self.out_channels = [info["num_chs"] for info in features]
        self.out_strides = [info["reduction"] for info in features]

    def walk(self, engine: Engine, images: torch.Tensor) -> list[torch.Tensor]:
        model = self.model
        x = batch_norm_act(engine, engine.stem(images, model.conv_stem), model.bn1)
        outputs = []
        for index, stage in enumerate(model.blocks):
            for block in stage:
                x = efficient_block(engine, block, x)
            if index in self.stage_outputs:
                outputs.append(engine.dense(x))
        return outputs

    @classmethod
    def lr_layer_count(cls, model: nn.Module) -> int:
        """Layer-wise lr decay counts every block as a layer (16 for mobilenetv3_large_100 and efficientnet_b0)."""
        return sum(len(stage) for stage in model.blocks)

    @classmethod
    def lr_layer_id(cls, model: nn.Module, name: str) -> int:
        """0 for the stem, 1..N for the blocks in depth order, N + 1 for the head (conv_head, bn2, classifier)."""
        block = nested_block_id(name, "blocks", [len(stage) for stage in model.blocks])
        if block is not None:
            return block
        if name.startswith(("conv_stem.", "bn1.")):
            return 0
        if cls.is_head_key(name):
            return cls.lr_layer_count(model) + 1
        raise unknown_parameter(cls.family, name)

    @classmethod
    def pooled_features(cls, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """The average of the last block stage's map: timm's `forward_features` would add EfficientNet's `conv_head`
        and `bn2`, head modules that an export does not hold."""
        return model.blocks(model.bn1(model.conv_stem(images))).mean(dim=(2, 3))

    @classmethod
    def mm_backbone(cls, name: str) -> MMBackbone:
        """hiermae's `TimmBackbone` (neither mmdet nor mmseg ships these models), which holds timm's model as is."""
        return timm_features_backbone(name)


def batch_norm_act(engine: Engine, x: FeatureMap, bn: BatchNormAct2d) -> FeatureMap:
    """timm's BatchNormAct2d: BatchNorm over visible sites, then its activation."""
    return engine.act(engine.batch_norm(x, bn), bn.act)


def squeeze_excite(engine: Engine, x: FeatureMap, se: nn.Module) -> FeatureMap:
    """timm's SqueezeExcite with each sample's mean taken over its visible sites (Identity: no SE)."""
    if isinstance(se, nn.Identity):
        return x
    squeezed = engine.sample_means(x)[:, :, None, None]  # B C 1 1
    gate = se.gate(se.conv_expand(se.act1(se.conv_reduce(squeezed))))
    return engine.scale_samples(x, gate.flatten(1))


def efficient_block(engine: Engine, block: Block, x: FeatureMap) -> FeatureMap:
    """One inverted-residual, depthwise-separable or conv-bn-act block, as timm's forward computes it."""
    if isinstance(block, InvertedResidual):
        y = batch_norm_act(engine, engine.conv(x, block.conv_pw), block.bn1)
        y = batch_norm_act(engine, engine.conv(y, block.conv_dw), block.bn2)
        y = squeeze_excite(engine, y, block.se)
        y = batch_norm_act(engine, engine.conv(y, block.conv_pwl), block.bn3)
    elif isinstance(block, DepthwiseSeparableConv):
        y = batch_norm_act(engine, engine.conv(x, block.conv_dw), block.bn1)
        y = squeeze_excite(engine, y, block.se)
        y = batch_norm_act(engine, engine.conv(y, block.conv_pw), block.bn2)
    else:
        y = batch_norm_act(engine, engine.conv(x, block.conv), block.bn1)
    return engine.add(y, x) if block.has_skip else y


def check_plain_efficient_cnn(model: nn.Module) -> None:
    """Raise for timm options the masked engines do not implement (space-to-depth, anti-aliasing, drop path, ...)."""
    if not isinstance(model.bn1, BatchNormAct2d):
        raise NotImplementedError("only a BatchNormAct2d stem is supported")
    for stage in model.blocks:
        for block in stage:
            if not isinstance(block, (ConvBnAct, DepthwiseSeparableConv, InvertedResidual)):
                raise NotImplementedError(f"unsupported block {type(block).__name__}")
            norms = [module for name, module in block.named_children() if name.startswith("bn")]
            plain = (
                getattr(block, "conv_s2d", None) is None
                and isinstance(block.aa, nn.Identity)
                and isinstance(block.drop_path, nn.Identity)
                and isinstance(getattr(block, "se", nn.Identity()), (nn.Identity, SqueezeExcite))
                and all(isinstance(norm, BatchNormAct2d) and isinstance(norm.drop, nn.Identity) for norm in norms)
            )
            if not plain:
                raise NotImplementedError(
                    f"unsupported {type(block).__name__} options (space-to-depth, anti-aliasing, drop path, or a "
                    "squeeze-excite other than timm's SqueezeExcite)"
                )
