# The fine-tuning protocol (hiermae/downstream/finetune.py: FineTuneRecipe; a test keeps the two equal), after
# MAE's (He et al. 2022, appendix A.2): AdamW with betas (0.9, 0.999) and weight decay 0.05, lr = 1e-2 × batch / 256
# for the head (MAE's 1e-3 left the head of a 1000-image fine-tune under-trained; a family config restates its own
# `finetune_base_lr` where it differs: docs/results/finetune-diagnosis-cpu.md), layer-wise lr decay (the family's
# rate for pretrained weights, none for random init: `layer_decay_rate=None`; set a number to override), 3 warm-up
# epochs then cosine to 0, label smoothing 0.1 (in the model). 30 epochs end at lr 0, so the
# training loss flattens; `curve.json` shows it.
max_epochs = 30
warmup_epochs = 3
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(fp16=False)
val_evaluator = dict(type="TopOneAccuracy")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-2, betas=(0.9, 0.999), weight_decay=0.05),
    constructor="LayerDecayOptimWrapperConstructor",
    paramwise_cfg=dict(layer_decay_rate=None),
)
auto_scale_lr = dict(base_batch_size=256, enable=True)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=warmup_epochs, end=max_epochs, T_max=max_epochs - warmup_epochs,
         eta_min=0.0, convert_to_iter_based=True),
]
