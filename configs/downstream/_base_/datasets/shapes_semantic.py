# Semantic segmentation on the shapes scenes (tools/make_scenes.py --mode shapes --out data/shapes): fast checks.
_base_ = ["./scenes_semantic.py"]
data_root = "data/shapes/"
classes = ("background", "circle", "rectangle", "triangle")
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
test_dataloader = val_dataloader
