# hiermae's pretraining recipe for MobileNetV3 / EfficientNet (the efficient-CNN family), on Fashion-MNIST at 96 px
# (3×3 mask units). The sparse encoder computes at visible sites only; squeeze-excite pools each sample over its
# visible sites. No MIM paper pretrains these models, so the recipe is the CNN one (the ResNet recipe's sources):
# - mask ratio 0.6 of 32-px units: SparK (Tian et al. 2023) and ConvNeXt V2 (Woo et al. 2023) mask 60 % for CNNs;
# - per-unit normalised pixel target, MSE on masked units: SparK and MAE (He et al. 2022, Table 1d);
# - hierarchical UNet decoder fusing the four stages (strides 4-32) coarse to fine: SparK's light decoder, 256
#   channels at the coarsest level to suit a 3 M-parameter encoder on a CPU;
# - AdamW with betas (0.9, 0.95), weight decay 0.04: SparK's betas and starting weight decay (SparK uses LAMB);
# - lr = base_lr × batch / 256 (the linear scaling MAE and SparK use), base_lr the same as the other families'
#   (see the ResNet recipe);
# - linear warm-up over the first 10 % of iterations (warmup_fraction), then cosine decay.
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
    backbone="mobilenetv3_large_100",
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
