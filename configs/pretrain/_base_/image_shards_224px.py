# WebDataset shards made by tools/make_shards.py: set train_dataloader.dataset.root to the shard folder.
# The dataset streams (an iterable dataset): it splits the shards over ranks and workers itself, so the loader
# takes no sampler, and it repeats without end, so iteration-based training never restarts the workers.
_base_ = ["mim_model.py"]

image_size = 224
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=None,
    collate_fn=dict(type="pseudo_collate"),
    dataset=dict(type="ImageShards", root="data/shards", image_size=image_size, shuffle_buffer=1000),
)
model = dict(
    data_preprocessor=dict(
        type="MIMDataPreprocessor", flip_prob=0.5, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]
    )
)
