# Sparse ResNet-50 on your own grey images at 224 px (X-ray, CT or MR slices, microscopy, inspection photos), read as
# one channel, never repeated into RGB: 8- and 16-bit PNG, JPEG, TIFF (rules in hiermae/data/images.py).
# Set train_dataloader.dataset.root; fine-tune the export with tools/finetune.py (it reads C = 1 from it).
_base_ = ["hiermae_resnet50_224px_imagefolder.py"]

channels = 1
train_dataloader = dict(dataset=dict(channels=channels))
# The mean and std of ImageNet's three channels, averaged: put your data's own (in 0-255) here.
model = dict(in_chans=channels, data_preprocessor=dict(mean=[114.5], std=[57.6]))
