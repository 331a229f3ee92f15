"""Layer-wise learning-rate decay for fine-tuning: optimiser parameter groups scaled by depth, family by family.

A family numbers its timm parameters by depth (`lr_layer_id` / `lr_layer_count` on its adapter in `backbones/`,
reached through `encoder_family`, which also holds its rate, `finetune_layer_decay`): with N layers, a parameter
at id i learns at lr × rate ** (N + 1 − i), so the classifier head keeps the full rate and the stem the smallest
(BEiT, Bao et al. 2022; MAE, He et al. 2022).
Biases, norm weights and the tables timm lists in `no_weight_decay()` (position embeddings, class tokens, Swin's
relative-position biases) get no weight decay, as in MAE's fine-tuning.
"""

from typing import Any

from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS
from torch import nn

from hiermae.backbones import encoder_family


def layer_decay_rate(backbone: str, pretrained: bool, rate: float | None = None) -> float:
    """`rate` when given, else the family's rate for pretrained weights (`finetune_layer_decay`) and none (1.0) for
    random init, which has no features to preserve (the papers train their from-scratch baselines without it)."""
    if rate is not None:
        return rate
    return encoder_family(backbone).finetune_layer_decay if pretrained else 1.0


def layer_decay_groups(network: nn.Module, backbone: str, rate: float, weight_decay: float) -> list[dict[str, Any]]:
    """Parameter groups of the timm model `network` (of family `backbone`): one per layer id and decay setting,
    each with `lr_scale` (rate ** (N + 1 − id)), `weight_decay` and `layer_id`."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"layer-wise lr decay rate must be in (0, 1], got {rate}")
    family = encoder_family(backbone)
    top = family.lr_layer_count(network) + 1
    no_decay = set(network.no_weight_decay()) if hasattr(network, "no_weight_decay") else set()
    groups: dict[tuple[int, float], dict[str, Any]] = {}
    for name, parameter in network.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = family.lr_layer_id(network, name)
        decay = 0.0 if parameter.ndim <= 1 or name in no_decay else weight_decay
        group = groups.setdefault(
            (layer, decay), {"params": [], "layer_id": layer, "lr_scale": rate ** (top - layer), "weight_decay": decay}
        )
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor:
    """mmengine optimiser constructor for a model with `network` (a timm model), `backbone` (its timm name) and
    `pretrained` (whether it starts from loaded weights).

    `paramwise_cfg=dict(layer_decay_rate=r)`: r = 1 trains every layer at the optimiser's lr; None (the default)
    picks `layer_decay_rate(backbone, pretrained)`. The optimiser's `lr` is the head's; `weight_decay` applies to
    weight matrices and convolution kernels only.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        unknown = set(paramwise_cfg or {}) - {"layer_decay_rate"}
        if unknown:
            raise ValueError(f"LayerDecayOptimWrapperConstructor takes only layer_decay_rate, got {sorted(unknown)}")
        self.optim_wrapper_cfg = dict(optim_wrapper_cfg)
        self.rate = (paramwise_cfg or {}).get("layer_decay_rate")

    def __call__(self, model: nn.Module) -> OptimWrapper:
        model = model.module if is_model_wrapper(model) else model
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        optimizer_cfg = dict(wrapper_cfg.pop("optimizer"))
        lr, weight_decay = optimizer_cfg["lr"], optimizer_cfg.get("weight_decay", 0.0)
        rate = layer_decay_rate(model.backbone, model.pretrained, self.rate)
        groups = layer_decay_groups(model.network, model.backbone, rate, weight_decay)
        grouped = {id(p) for group in groups for p in group["params"]}
        outside = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in grouped]
        if outside:
            raise ValueError(f"parameters outside the timm network would not be trained: {outside[:5]}")
        for group in groups:
            group["lr"] = lr * group["lr_scale"]
        optimizer = OPTIMIZERS.build({**optimizer_cfg, "params": groups})
        wrapper_cfg.setdefault("type", "OptimWrapper")
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))
