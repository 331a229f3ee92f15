# UperNet, ConvNeXt-Atto (hiermae's TimmBackbone), on the stamp scenes' label maps.
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
        _delete_=True, type="TimmBackbone", backbone="convnext_atto", in_channels=3, out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
    ),
    decode_head=dict(in_channels=[40, 80, 160, 320]),
    auxiliary_head=dict(in_channels=160),
)
