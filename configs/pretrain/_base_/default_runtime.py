# Runtime shared by the pretraining configs: iteration-based training, logs with ETA, tensorboard, checkpoints
# that let any run resume, and reconstruction PNGs.
default_scope = None
custom_imports = dict(imports=["hiermae"], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=10),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="PortableCheckpointHook", by_epoch=False, interval=200, max_keep_ckpts=2, save_last=True),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
custom_hooks = [
    dict(type="ReconstructionHook", interval=200, num_images=6),
    dict(type="TrainingSummaryHook", window=10),
    dict(type="NonFiniteLossHook"),
]
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="gloo"),
)
log_processor = dict(by_epoch=False, window_size=10)
log_level = "INFO"
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")])
randomness = dict(seed=0, deterministic=False)
load_from = None
resume = False
