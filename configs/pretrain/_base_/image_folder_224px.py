# The user's own images: set train_dataloader.dataset.root (flat folder or class sub-folders) with --cfg-options.
_base_ = ["mim_model.py"]

image_size = 224
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    # endless shuffled passes with no restart between them; each batch knows its iteration, so the workers draw
    # its masks and sparse plans (hiermae.data: sampling, collate) and a resumed run continues the same order
    sampler=dict(type="InfiniteIndexSampler", shuffle=True),
    batch_sampler=dict(type="IterationBatchSampler"),
    collate_fn=dict(type="pseudo_collate"),
    dataset=dict(type="ImageFolder", root="data/images", image_size=image_size),
)
model = dict(
    data_preprocessor=dict(
        type="MIMDataPreprocessor", flip_prob=0.5, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]
    )
)
