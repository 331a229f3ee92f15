# UperNet, ResNet-18 (mmseg's own ResNet), on the stamp scenes' label maps; mIoU.
#   python tools/make_scenes.py --out data/scenes
#   python tools/train.py configs/downstream/upernet_resnet18_scenes.py
# From hiermae pretraining: tools/export.py CKPT --format mmseg --out FILE, then
#   --cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=FILE
_base_ = [
    "_base_/models/upernet.py",
    "_base_/default_runtime_mmseg.py",
    "_base_/datasets/scenes_semantic.py",
    "_base_/schedules/sgd_1k.py",
]
