# The low-label regime on Fashion-MNIST at 96 px: train on a fixed stratified 1000 of the 60 k training images
# (100 per class, the same for every run), whole images with flips (no random crops, no drop path: both cost every
# random init 3-12 points on the validation split, docs/results/finetune-diagnosis-cpu.md); score top-1 on the
# 10 k test images.
image_size = 96
loader = dict(num_workers=0, collate_fn=dict(type="default_collate"))
train_dataloader = dict(
    batch_size=64,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(type="LabelledFashionMNIST", split="train", subset="labelled", labelled_size=1000,
                 image_size=image_size, augment=True, crop_scale=[1.0, 1.0]),
    **loader,
)
val_dataloader = dict(
    batch_size=256,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type="LabelledFashionMNIST", split="test", image_size=image_size),
    **loader,
)
model = dict(
    type="ImageClassifier",
    num_classes=10,
    input_size=image_size,
    drop_path_rate=0.0,
    label_smoothing=0.1,
    data_preprocessor=dict(type="ImgDataPreprocessor", mean=[72.9] * 3, std=[90.0] * 3),
)
