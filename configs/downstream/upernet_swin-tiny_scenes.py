# UperNet, Swin-T (mmseg's own SwinTransformer), on the stamp scenes' label maps.
# From hiermae pretraining: tools/export.py CKPT --format mmseg --out FILE [--target-config THIS_FILE], then
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
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384),
)
