# Sparse ConvNeXt-atto masked pretraining on Fashion-MNIST at 128 px (4x4 mask units): the `make demo` job.
# About 5 minutes on 2 CPU cores (400 iterations at batch 32).
_base_ = [
    "_base_/default_runtime.py",
    "_base_/fashion_mnist.py",
    "_base_/adamw_cosine.py",
]

model = dict(backbone="convnext_atto", input_size=128)
train_dataloader = dict(dataset=dict(image_size=128))
max_iters = 400
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=40),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=40, end=max_iters, eta_min=1e-5),
]
default_hooks = dict(checkpoint=dict(interval=200), logger=dict(interval=20))
custom_hooks = [
    dict(type="ReconstructionHook", interval=200, num_images=6),
    dict(type="TrainingSummaryHook", window=20),
    dict(type="NonFiniteLossHook"),
]
