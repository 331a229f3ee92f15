# 1k iterations of AdamW for the transformer, ConvNeXt and MobileNetV3 backbones, warm-up then steps at 70 % and 90 %.
_base_ = ["./sgd_1k.py"]
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=10, norm_type=2),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
