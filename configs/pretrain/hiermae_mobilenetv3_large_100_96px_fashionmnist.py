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
_base_ = ["_base_/recipe_96px_fashionmnist.py"]

model = dict(backbone="mobilenetv3_large_100")
