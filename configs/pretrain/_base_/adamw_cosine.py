# AdamW (MAE's betas and weight decay) with linear warm-up then cosine decay, counted in iterations.
max_iters = 600
warmup_iters = 50
train_cfg = dict(type="ResumableIterBasedTrainLoop", max_iters=max_iters)  # resumes without re-reading data
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1.5e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, custom_keys={"mask_token": dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=3.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup_iters, end=max_iters, eta_min=1e-5),
]
