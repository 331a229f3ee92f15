# ViT-Tiny/16 with MAE token dropping, Fashion-MNIST at 64 px.
_base_ = ["_base_/default_runtime.py", "_base_/fashion_mnist_64px.py", "_base_/adamw_cosine.py"]

model = dict(
    type="MaskedPretrainer",
    backbone="vit_tiny_patch16_224",
    sparse=True,
    input_size=64,
    mask=dict(type="random", mask_ratio=0.75),
    decoder=dict(type="transformer"),
    target=dict(type="norm_pixels"),
    loss=dict(type="mse"),
    data_preprocessor={{_base_.data_preprocessor}},
)
