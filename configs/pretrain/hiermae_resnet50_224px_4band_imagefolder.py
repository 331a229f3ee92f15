# Sparse ResNet-50 on multispectral tiles at 224 px: a folder of 4-band TIFFs (e.g. red, green, blue, near infrared;
# samples per pixel or one plane per band, 8-bit, 16-bit or float, read with tifffile: hiermae/data/images.py).
# Set train_dataloader.dataset.root; a file of another band count stops the run with ChannelCountError naming it.
# For C bands set `channels` and C values of mean and std.
_base_ = ["hiermae_resnet50_224px_imagefolder.py"]

channels = 4
train_dataloader = dict(dataset=dict(channels=channels))
# ImageNet's statistics averaged, for every band: put your data's own (in 0-255, after the 8-bit scaling) here.
model = dict(in_chans=channels, data_preprocessor=dict(mean=[114.5] * channels, std=[57.6] * channels))
custom_hooks = [
    dict(type="ReconstructionHook", interval=2000, bands=(0, 1, 2)),  # the bands shown as red, green, blue
    dict(type="TrainingSummaryHook"),
    dict(type="NonFiniteLossHook"),
]
