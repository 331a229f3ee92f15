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
# - lr = base_lr × batch / 256, base_lr 3e-3: a quarter of the other families' (see the ResNet recipe), chosen by
#   the per-family sweep (docs/results/sweep-cpu.md, one seed, 20 min each): at 0.25× Swin-T's kNN rose from 60.5
#   to 71.4 %, its linear probe from 68.2 to 80.5 % and its final loss fell from 0.400 to 0.313. SimMIM's 8e-4 at
#   batch 2048 is 1e-4 per 256, for 100 epochs, not ~10^3 iterations;
# - linear warm-up over the first 10 % of iterations (SimMIM warms up 10 of 100 epochs), then cosine decay.
_base_ = ["_base_/recipe_96px_fashionmnist.py"]

model = dict(backbone="swin_tiny_patch4_window7_224")
optim_wrapper = dict(optimizer=dict(lr=3e-3, betas=(0.9, 0.999), weight_decay=0.05))
