# ViT-Tiny/16 with MAE token dropping, Fashion-MNIST at 64 px.
_base_ = [
    "_base_/default_runtime.py",
    "_base_/fashion_mnist.py",
    "_base_/adamw_cosine.py",
]

model = dict(backbone="vit_tiny_patch16_224", decoder=dict(_delete_=True, type="transformer"))
