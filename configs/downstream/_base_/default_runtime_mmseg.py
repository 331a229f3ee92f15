# mmseg runtime for the transfer configs: self-sufficient for tools/train.py (scope + the imports that register
# hiermae's TimmBackbone in mmseg's registry).
default_scope = "mmseg"
custom_imports = dict(imports=["hiermae.downstream.mmseg_models"], allow_failed_imports=False)
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="PortableCheckpointHook", by_epoch=False, interval=500, max_keep_ckpts=1),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    visualization=dict(type="SegVisualizationHook"),
)
env_cfg = dict(
    cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0), dist_cfg=dict(backend="gloo")
)
visualizer = dict(type="SegLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")], name="visualizer")
log_processor = dict(by_epoch=False)
log_level = "INFO"
randomness = dict(seed=0)
load_from = None
resume = False
