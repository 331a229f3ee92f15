# Fashion-MNIST (the embedded default data, Debian package dataset-fashion-mnist) upsampled to RGB; 64 px unless
# a config sets train_dataloader.dataset.image_size (and model.input_size) to another multiple of 32.
_base_ = ["mim_model.py"]

image_size = 64
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    # endless shuffled passes with no restart between them; each batch knows its iteration, so the workers draw
    # its masks and sparse plans (hiermae.data: sampling, collate) and a resumed run continues the same order
    sampler=dict(type="InfiniteIndexSampler", shuffle=True),
    batch_sampler=dict(type="IterationBatchSampler"),
    collate_fn=dict(type="pseudo_collate"),
    dataset=dict(type="FashionMNIST", split="train", image_size=image_size),
)
model = dict(
    data_preprocessor=dict(type="MIMDataPreprocessor", flip_prob=0.5, mean=[72.9, 72.9, 72.9], std=[90.0, 90.0, 90.0])
)
