# UperNet, MobileNetV3-Large (hiermae's TimmBackbone: its stride 4-32 stage maps), on the stamp scenes' label maps.
# From hiermae pretraining: tools/export.py CKPT --format mmseg --out FILE, then
#   --cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=FILE
_base_ = [
    "_base_/models/upernet.py",
    "_base_/default_runtime_mmseg.py",
    "_base_/datasets/scenes_semantic.py",
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
    decode_head=dict(in_channels=[24, 40, 112, 960]),
    auxiliary_head=dict(in_channels=112),
)
