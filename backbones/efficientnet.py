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

from hiermae.backbones.site_encoder import SiteEncoder
from hiermae.registry import ENCODERS
from hiermae.sparse import Engine, FeatureMap

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

    def __init__(self, name: str, *, sparse: bool = True, input_size: int = 224) -> None:
        super().__init__(name, sparse=sparse, input_size=input_size)
        self.model = timm.create_model(name, pretrained=False, num_classes=0)
        for head in ("conv_head", "bn2"):
            if hasattr(self.model, head):
                setattr(self.model, head, nn.Identity())
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
