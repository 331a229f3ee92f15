# Sparse ResNet-18 masked pretraining on Fashion-MNIST at 64 px.
_base_ = ["_base_/default_runtime.py", "_base_/fashion_mnist_64px.py", "_base_/adamw_cosine.py"]

model = dict(
    type="MaskedPretrainer",
    backbone="resnet18",
    sparse=True,
    input_size=64,
    mask=dict(type="random", mask_ratio=0.75),
    decoder=dict(type="unet", width=256),
    target=dict(type="norm_pixels"),
    loss=dict(type="mse"),
    data_preprocessor={{_base_.data_preprocessor}},
)
