# Mask R-CNN + FPN, MobileNetV3-Large (hiermae's TimmBackbone: its stride 4-32 stage maps), on the stamp scenes.
# From hiermae pretraining: tools/export.py CKPT --format mmdet --out FILE (the timm export loads too), then
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
        type="TimmBackbone",
        in_channels=3,
        backbone="mobilenetv3_large_100",
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
    ),
    neck=dict(in_channels=[24, 40, 112, 960]),
)
