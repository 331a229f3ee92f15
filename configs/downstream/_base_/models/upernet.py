# UperNet (Xiao et al. 2018) with a ResNet-18 backbone; the top-level configs swap the backbone.
# CPU-sized heads (channels 128; the Swin/ConvNeXt papers use 512) and plain BN (SyncBN needs a process group).
# Pretrained weights: --cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=FILE
# with FILE from `tools/export.py CKPT --format mmseg --out FILE`.
norm_cfg = dict(type="BN", requires_grad=True)
# Input channels: a C-channel export (tools/export.py) loads into a backbone with in_channels=C; set it with
#   --cfg-options model.backbone.in_channels=C and C values of model.data_preprocessor.mean / std.
model = dict(
    type="EncoderDecoder",
    data_preprocessor=dict(
        type="SegDataPreProcessor",
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=(128, 128),
    ),
    pretrained=None,
    backbone=dict(
        type="ResNet",
        in_channels=3,
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style="pytorch",
    ),
    decode_head=dict(
        type="UPerHead",
        in_channels=[64, 128, 256, 512],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=128,
        dropout_ratio=0.1,
        num_classes=6,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head=dict(
        type="FCNHead",
        in_channels=256,
        in_index=2,
        channels=64,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=6,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)
