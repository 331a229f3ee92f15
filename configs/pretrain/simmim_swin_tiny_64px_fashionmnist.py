# Swin-T with SimMIM mask tokens (the dense reference), Fashion-MNIST at 64 px.
_base_ = [
    "_base_/default_runtime.py",
    "_base_/fashion_mnist.py",
    "_base_/adamw_cosine.py",
]

model = dict(backbone="swin_tiny_patch4_window7_224", sparse=False)
