# Mask R-CNN + FPN, Swin-T (mmdet's own SwinTransformer), on the stamp scenes.
# From hiermae pretraining: tools/export.py CKPT --format mmdet --out FILE [--target-config THIS_FILE], then
#   --cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=FILE
_base_ = [
    "_base_/models/mask-rcnn_fpn.py",
    "_base_/default_runtime_mmdet.py",
    "_base_/datasets/scenes_instance.py",
    "_base_/schedules/adamw_1k.py",
]
model = dict(
    backbone=dict(
        _delete_=True,
        type="SwinTransformer",
        in_channels=3,
        embed_dims=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        patch_norm=True,
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
    ),
    neck=dict(in_channels=[96, 192, 384, 768]),
)
