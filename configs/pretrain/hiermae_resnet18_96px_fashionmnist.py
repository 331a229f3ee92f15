# hiermae's pretraining recipe for ResNets (tools/compare.py starts every ResNet run from it), on Fashion-MNIST at
# 96 px (3×3 mask units). Choices and their sources:
# - mask ratio 0.6 of 32-px units: SparK (Tian et al. 2023), whose ResNet/ConvNeXt recipe uses 60 %;
# - per-unit normalised pixel target, MSE on masked units: SparK and MAE (He et al. 2022, Table 1d);
# - hierarchical UNet decoder fusing the four stages coarse to fine: SparK's light decoder; 256 channels at the
#   coarsest level (SparK uses 512 for ResNet-50) to suit an 11 M-parameter encoder on a CPU;
# - AdamW with betas (0.9, 0.95), weight decay 0.04: SparK's betas and starting weight decay (SparK uses LAMB);
# - lr = base_lr × batch / 256 (the linear scaling MAE and SparK use). base_lr is ours: these runs last ~10^3
#   iterations, not 1600 epochs, so it is 60× SparK's 2e-4; it equals the lr 1.5e-3 at batch 32 that the earlier
#   comparison ran with. The per-family sweep (tools/compare.py --sweep) tries 0.25× of it and both mask ratios;
# - linear warm-up over the first 10 % of iterations (warmup_fraction), then cosine decay.
_base_ = ["_base_/recipe_96px_fashionmnist.py"]

model = dict(backbone="resnet18")
