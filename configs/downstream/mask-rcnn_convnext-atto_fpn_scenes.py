# Mask R-CNN + FPN, ConvNeXt-Atto (hiermae's TimmBackbone), on the stamp scenes.
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
        _delete_=True, type="TimmBackbone", backbone="convnext_atto", in_channels=3, out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
    ),
    neck=dict(in_channels=[40, 80, 160, 320]),
)
