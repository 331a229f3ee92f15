# UperNet, ResNet-18, on the shapes scenes (tools/make_scenes.py --mode shapes --out data/shapes).
_base_ = [
    "_base_/models/upernet.py",
    "_base_/default_runtime_mmseg.py",
    "_base_/datasets/shapes_semantic.py",
    "_base_/schedules/sgd_1k.py",
]
model = dict(decode_head=dict(num_classes=4), auxiliary_head=dict(num_classes=4))
