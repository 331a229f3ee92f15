# Mask R-CNN + FPN, ResNet-18 (mmdet's own ResNet), on the stamp scenes; box and mask AP (pycocotools).
#   python tools/make_scenes.py --out data/scenes
#   python tools/train.py configs/downstream/mask-rcnn_resnet18_fpn_scenes.py
# From hiermae pretraining: tools/export.py CKPT --format mmdet --out FILE, then
#   --cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=FILE
_base_ = [
    "_base_/models/mask-rcnn_fpn.py",
    "_base_/default_runtime_mmdet.py",
    "_base_/datasets/scenes_instance.py",
    "_base_/schedules/sgd_1k.py",
]
