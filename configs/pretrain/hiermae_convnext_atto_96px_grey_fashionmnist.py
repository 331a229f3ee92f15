# The ConvNeXt recipe (hiermae_convnext_atto_96px_fashionmnist.py) on Fashion-MNIST read as one grey channel, as the
# images are; the comparison configs keep three channels, so their results stay comparable.
_base_ = ["hiermae_convnext_atto_96px_fashionmnist.py"]

channels = 1
train_dataloader = dict(dataset=dict(channels=channels))
model = dict(in_chans=channels, data_preprocessor=dict(mean=[72.9], std=[90.0]))
