# Fine-tune ResNet-50 on your labelled images (one sub-folder per class) at 224 px, from a hiermae export:
#   python tools/train.py configs/finetune/finetune_resnet50_224px_imagefolder.py --amp --cfg-options \
#       model.checkpoint=r50_timm.pth train_dataloader.dataset.root=data/pets val_dataloader.dataset.root=data/pets
# A stratified 20 % of the folder is held out and scored (part="val"); point val_dataloader.dataset.root at another
# folder with part="all" to score that instead. Set model.num_classes to the number of class sub-folders.
_base_ = [
    "_base_/finetune_runtime.py",
    "_base_/adamw_layer_decay_30e.py",
]

image_size = 224
loader = dict(num_workers=4, persistent_workers=True, collate_fn=dict(type="default_collate"))
train_dataloader = dict(
    batch_size=64,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(type="LabelledImageFolder", root="data/images", part="train", val_fraction=0.2,
                 image_size=image_size, augment=True, crop_scale=[0.08, 1.0]),
    **loader,
)
val_dataloader = dict(
    batch_size=128,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type="LabelledImageFolder", root="data/images", part="val", val_fraction=0.2, image_size=image_size),
    **loader,
)
model = dict(
    type="ImageClassifier",
    backbone="resnet50",
    checkpoint=None,
    num_classes=10,
    input_size=image_size,
    drop_path_rate=0.1,
    label_smoothing=0.1,
    data_preprocessor=dict(type="ImgDataPreprocessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
)
