# Semantic segmentation on the stamp scenes of tools/make_scenes.py (label maps in semantic/, 0 = background).
# For ADE20K: dataset_type="ADE20KDataset", data_root="data/ade/ADEChallengeData2016", reduce_zero_label=True,
# image_scale=(2048, 512), crop 512x512.
dataset_type = "BaseSegDataset"
data_root = "data/scenes/"
classes = ("background", "animal", "food", "plant", "vehicle", "household")
image_scale = (128, 128)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
dataset = dict(
    type=dataset_type,
    data_root=data_root,
    metainfo=dict(classes=classes),
    img_suffix=".png",
    seg_map_suffix=".png",
    reduce_zero_label=False,
)
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        **dataset, data_prefix=dict(img_path="images/train", seg_map_path="semantic/train"), pipeline=train_pipeline
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        **dataset, data_prefix=dict(img_path="images/val", seg_map_path="semantic/val"), pipeline=test_pipeline
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator
