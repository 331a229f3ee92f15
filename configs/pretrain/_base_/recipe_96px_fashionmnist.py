# The body every family's pretraining recipe shares (configs/pretrain/*_96px_fashionmnist.py, whose comments give
# the sources): Fashion-MNIST at 96 px (3×3 mask units), batch 32, lr = base_lr × batch / 256, AdamW, 10 % linear
# warm-up then cosine decay over 1000 iterations, a 60 % random mask, the UNet decoder, the per-unit normalised
# pixel target and MSE. A recipe overrides what its family does differently; one that changes base_lr or max_iters
# restates the optimiser or the schedule that uses them.
_base_ = [
    "default_runtime.py",
    "fashion_mnist.py",
    "adamw_cosine.py",
]

image_size = 96
batch_size = 32
base_lr = 1.2e-2
warmup_fraction = 0.1
model = dict(
    input_size=image_size,
    mask=dict(type="random", mask_ratio=0.6),
    decoder=dict(_delete_=True, type="unet", width=256),
    target=dict(type="norm_pixels"),
    loss=dict(type="mse"),
)
train_dataloader = dict(batch_size=batch_size, dataset=dict(image_size=image_size))
optim_wrapper = dict(optimizer=dict(lr=base_lr, betas=(0.9, 0.95), weight_decay=0.04))
auto_scale_lr = dict(base_batch_size=256, enable=True)
max_iters = 1000
warmup_iters = int(warmup_fraction * max_iters)
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup_iters, end=max_iters, eta_min=1e-5),
]
