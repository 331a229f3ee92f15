# The same ConvNeXt-atto job on the masked-dense reference (SparK-style zeroing): the baseline.
_base_ = [
    "_base_/default_runtime.py",
    "_base_/fashion_mnist.py",
    "_base_/adamw_cosine.py",
]

model = dict(backbone="convnext_atto", sparse=False)
