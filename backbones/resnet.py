"""timm ResNet (basic and bottleneck blocks, 7×7 stem, max-pool) on masked images, sparse or masked-dense."""

import timm
import torch
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from hiermae.backbones.family import MMBackbone, numbered, unknown_parameter
from hiermae.backbones.site_encoder import SiteEncoder
from hiermae.sparse import Engine, FeatureMap
from hiermae.utils import ENCODERS

MM_RESNET_DEPTHS = (18, 34, 50, 101, 152)


@ENCODERS.register_module()
class ResNetEncoder(SiteEncoder):
    """Outputs of layer1..layer4 (strides 4, 8, 16, 32). The smallest input is one 32-px unit."""

    family = "resnet"
    examples = "resnet18, resnet34, resnet50, resnet101"
    name_pattern = r"resnet(18|26|34|50|101|152)"
    head_modules = ("fc",)
    # Our choice, in the range the MIM papers use (0.65-0.9): ResNet counts its 4 stages as layers, so 0.8 puts its
    # stem at 0.8^5 ≈ 0.33 of the head's rate.
    finetune_layer_decay = 0.8
    # Chosen on the validation split with random init as the baseline (docs/results/finetune-diagnosis-cpu.md): 1e-3
    # left the head of a 1000-image fine-tune under-trained; 1e-2 raised random init and pretrained weights alike.
    finetune_base_lr = 1e-2

    def __init__(self, name: str, *, sparse: bool = True, input_size: int = 224, in_chans: int = 3) -> None:
        super().__init__(name, sparse=sparse, input_size=input_size, in_chans=in_chans)
        self.model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans)
        check_plain_resnet(self.model)
        self.out_channels = [info["num_chs"] for info in self.model.feature_info[1:]]
        self.out_strides = [4, 8, 16, 32]

    def walk(self, engine: Engine, images: torch.Tensor) -> list[torch.Tensor]:
        model = self.model
        x = engine.stem(images, model.conv1)
        x = engine.max_pool(engine.act(engine.batch_norm(x, model.bn1), model.act1), model.maxpool)
        outputs = []
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            for block in layer:
                x = residual_block(engine, block, x)
            outputs.append(engine.dense(x))
        return outputs

    @classmethod
    def lr_layer_count(cls, model: nn.Module) -> int:
        """Layer-wise lr decay counts ResNet's four stages (layer1..layer4) as its layers."""
        return 4

    @classmethod
    def lr_layer_id(cls, model: nn.Module, name: str) -> int:
        """0 for the stem, s for a parameter of stage `layer<s>`, 5 for the classifier `fc`."""
        stage = numbered(name, "layer")
        if stage is not None:
            return stage
        if name.startswith(("conv1.", "bn1.")):
            return 0
        if name.startswith("fc."):
            return cls.lr_layer_count(model) + 1
        raise unknown_parameter(cls.family, name)

    @classmethod
    def mm_backbone(cls, name: str) -> MMBackbone:
        """mmdet's / mmseg's own `ResNet` (style 'pytorch'), which names its weights as timm (torchvision) does."""
        depth = int(name.removeprefix("resnet"))
        if depth not in MM_RESNET_DEPTHS:
            raise ValueError(f"mmdet/mmseg ResNet has depths {MM_RESNET_DEPTHS}, not {name}'s {depth}")
        return MMBackbone(dict(type="ResNet", depth=depth, out_indices=(0, 1, 2, 3)))


def residual_block(engine: Engine, block: BasicBlock | Bottleneck, x: FeatureMap) -> FeatureMap:
    """One basic or bottleneck block, as timm's forward computes it, on the engine."""
    if isinstance(block, Bottleneck):
        layers = [(block.conv1, block.bn1, block.act1), (block.conv2, block.bn2, block.act2), (block.conv3, block.bn3)]
        final_act = block.act3
    else:
        layers = [(block.conv1, block.bn1, block.act1), (block.conv2, block.bn2)]
        final_act = block.act2
    out = x
    for conv, bn, *act in layers:
        out = engine.batch_norm(engine.conv(out, conv), bn)
        if act:
            out = engine.act(out, act[0])
    shortcut = x
    if block.downsample is not None:
        shortcut = engine.batch_norm(engine.conv(x, block.downsample[0]), block.downsample[1])
    return engine.act(engine.add(out, shortcut), final_act)


def check_plain_resnet(model: nn.Module) -> None:
    """Raise for timm ResNet options the masked engines do not implement (deep stems, SE, anti-aliasing, ...)."""
    if not isinstance(model.conv1, nn.Conv2d) or not isinstance(model.maxpool, nn.MaxPool2d):
        raise NotImplementedError("only the 7x7-conv + max-pool ResNet stem is supported")
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            extras = [block.se, block.drop_path, None if isinstance(block.aa, nn.Identity) else block.aa,
                      None if isinstance(block.drop_block, nn.Identity) else block.drop_block]
            if not isinstance(block, (BasicBlock, Bottleneck)) or any(extra is not None for extra in extras):
                raise NotImplementedError(f"unsupported ResNet block options in {type(block).__name__}")
