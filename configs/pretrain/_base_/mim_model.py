# The masked-pretraining model every pretraining config starts from; a config names its backbone and changes
# what it studies (sparse, mask, decoder, target, loss, input size).
model = dict(
    type="MaskedPretrainer",
    backbone="resnet18",
    sparse=True,
    input_size=64,
    in_chans=3,  # image channels: 1 for grey, more for multispectral bands (the data and the preprocessor's C means)
    mask=dict(type="random", mask_ratio=0.75),
    decoder=dict(type="unet", width=256),
    target=dict(type="norm_pixels"),
    loss=dict(type="mse"),
)
