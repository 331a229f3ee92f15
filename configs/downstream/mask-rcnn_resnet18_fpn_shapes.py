# Mask R-CNN + FPN, ResNet-18, on the shapes scenes (tools/make_scenes.py --mode shapes --out data/shapes).
_base_ = [
    "_base_/models/mask-rcnn_fpn.py",
    "_base_/default_runtime_mmdet.py",
    "_base_/datasets/shapes_instance.py",
    "_base_/schedules/sgd_1k.py",
]
model = dict(roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)))
