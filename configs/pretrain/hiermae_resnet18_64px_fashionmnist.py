# Sparse ResNet-18 masked pretraining on Fashion-MNIST at 64 px.
_base_ = [
    "_base_/default_runtime.py",
    "_base_/fashion_mnist.py",
    "_base_/adamw_cosine.py",
]

model = dict(backbone="resnet18")
