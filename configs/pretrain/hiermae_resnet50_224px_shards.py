# Sparse ResNet-50 on WebDataset shards (tools/make_shards.py) at 224 px: set train_dataloader.dataset.root.
_base_ = [
    "_base_/default_runtime.py",
    "_base_/image_shards_224px.py",
    "_base_/adamw_cosine.py",
]

model = dict(backbone="resnet50", input_size=224)

# A real pretraining schedule (iterations at batch 64): set it to your data, e.g. 800 epochs' worth.
max_iters = 100000
warmup_iters = 5000
train_cfg = dict(type="ResumableIterBasedTrainLoop", max_iters=max_iters)  # a resume starts a new pass
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup_iters, end=max_iters, eta_min=1e-6),
]
default_hooks = dict(checkpoint=dict(interval=2000))
custom_hooks = [
    dict(type="ReconstructionHook", interval=2000),
    dict(type="TrainingSummaryHook"),
    dict(type="NonFiniteLossHook"),
]
