# 1k iterations of SGD (CPU-sized; COCO 1x is 90k iterations at batch 16), warm-up then steps at 70 % and 90 %.
max_iters = 1000
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=500)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=max_iters, milestones=[700, 900], gamma=0.1),
]
