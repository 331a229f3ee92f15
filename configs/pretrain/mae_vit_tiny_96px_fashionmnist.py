# hiermae's pretraining recipe for ViT (tools/compare.py starts every ViT run from it), on Fashion-MNIST at 96 px
# (3×3 mask units of 2×2 patches): MAE's token dropping (He et al. 2022). Choices and their sources:
# - mask ratio 0.75: MAE (Fig. 5);
# - per-unit normalised pixel target, MSE on masked units: MAE (Table 1d);
# - transformer decoder 128 wide, 2 blocks: MAE's Table 1a/1b find a 1–2-block, 128-wide decoder fine-tunes as well
#   as its 8-block, 512-wide default (84.8–84.9 vs 84.9 %), and it is much cheaper here;
# - AdamW with betas (0.9, 0.95) and weight decay 0.05: MAE's;
# - lr = base_lr × batch / 256 (MAE's rule). base_lr is ours, the same as the other families' (see the ResNet
#   recipe): MAE's 1.5e-4 is for 800–1600 epochs, not ~10^3 iterations; the sweep tries 0.25× too;
# - linear warm-up over the first 10 % of iterations (MAE warms up 40 of 800 epochs), then cosine decay.
_base_ = ["_base_/recipe_96px_fashionmnist.py"]

model = dict(
    backbone="vit_tiny_patch16_224",
    mask=dict(mask_ratio=0.75),
    decoder=dict(_delete_=True, type="transformer", width=128, depth=2, num_heads=4),
)
optim_wrapper = dict(optimizer=dict(weight_decay=0.05))
