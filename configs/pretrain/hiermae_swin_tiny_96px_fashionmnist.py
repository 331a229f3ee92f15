# hiermae's pretraining recipe for Swin (tools/compare.py starts every Swin run from it), on Fashion-MNIST at 96 px
# (3×3 mask units). hiermae's sparse Swin attends among visible tokens only (GreenMIM's idea, Huang et al. 2022).
# Choices and their sources:
# - mask ratio 0.6 of 32-px units: SimMIM (Xie et al. 2022), which masks 60 % of 32-px patches for Swin;
# - per-unit normalised pixel target, MSE on masked units: MAE (He et al. 2022, Table 1d); SimMIM regresses raw
#   pixels (with L1); in hiermae's ConvNeXt-atto ablation raw pixels probed 4 points worse
#   (docs/results/ablations-cpu.md);
# - hierarchical UNet decoder: SimMIM's one-layer linear head predicts each masked unit from its own site, which
#   behind a sparse encoder holds only the mask token, so the encoder would get no gradient (the pretrainer warns);
# - AdamW with betas (0.9, 0.999) and weight decay 0.05: SimMIM's;
# - lr = base_lr × batch / 256. base_lr is ours, the same as the other families' (see the ResNet recipe):
#   SimMIM's 8e-4 at batch 2048 is 1e-4 per 256, for 100 epochs, not ~10^3 iterations; the sweep tries 0.25× too;
# - linear warm-up over the first 10 % of iterations (SimMIM warms up 10 of 100 epochs), then cosine decay.
_base_ = [
    "_base_/default_runtime.py",
    "_base_/fashion_mnist.py",
    "_base_/adamw_cosine.py",
]

image_size = 96
batch_size = 32
base_lr = 1.2e-2
warmup_fraction = 0.1
model = dict(
    backbone="swin_tiny_patch4_window7_224",
    input_size=image_size,
    mask=dict(type="random", mask_ratio=0.6),
    decoder=dict(_delete_=True, type="unet", width=256),
    target=dict(type="norm_pixels"),
    loss=dict(type="mse"),
)
train_dataloader = dict(batch_size=batch_size, dataset=dict(image_size=image_size))
optim_wrapper = dict(optimizer=dict(lr=base_lr, betas=(0.9, 0.999), weight_decay=0.05))
auto_scale_lr = dict(base_batch_size=256, enable=True)
max_iters = 1000
warmup_iters = int(warmup_fraction * max_iters)
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup_iters, end=max_iters, eta_min=1e-5),
]
