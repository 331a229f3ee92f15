# Instance segmentation on the shapes scenes (tools/make_scenes.py --mode shapes --out data/shapes): fast checks.
_base_ = ["./scenes_instance.py"]
data_root = "data/shapes/"
classes = ("circle", "rectangle", "triangle")
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + "annotations/instances_val.json")
test_evaluator = val_evaluator
