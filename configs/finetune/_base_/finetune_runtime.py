# Runtime of the fine-tuning configs: epoch-based training, the head started as a linear probe of the starting
# weights (LP-FT: `ProbeHeadHook`), a per-epoch curve (`curve.json`: loss, lr, seconds, top-1), the fine-tuned
# classifier saved at the end. Train with `tools/train.py CONFIG [--amp]` (bf16 on CPU).
default_scope = None
custom_imports = dict(imports=["hiermae", "hiermae.downstream.finetune"], allow_failed_imports=False)

default_hooks = dict(
    checkpoint=dict(type="CheckpointHook", interval=-1, save_last=True),
    logger=dict(type="LoggerHook", interval=10),
)
custom_hooks = [dict(type="TrainingCurveHook"), dict(type="ProbeHeadHook")]
log_processor = dict(by_epoch=True, window_size=10)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo"))
randomness = dict(seed=0, deterministic=False)
load_from = None
resume = False
