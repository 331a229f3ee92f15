import warnings

import pytest
import torch

from hiermae.masking.masks import MaskPyramid
from hiermae.utils.registry import DECODERS, build_part

FOUR_LEVELS = dict(in_channels=[16, 32, 64, 128], in_strides=[4, 8, 16, 32])
ONE_LEVEL = dict(in_channels=[48], in_strides=[16])


def features_for(spec, batch=2, size=64):
    return [torch.randn(batch, c, size // s, size // s) for c, s in zip(spec["in_channels"], spec["in_strides"])]


@pytest.mark.parametrize("name", ["unet", "transformer", "linear"])
@pytest.mark.parametrize("spec", [FOUR_LEVELS, ONE_LEVEL], ids=["4 levels", "1 level"])
@pytest.mark.parametrize("out", [(3, 1), (27, 8)], ids=["pixels", "hog"])
def test_prediction_covers_every_unit(name, spec, out):
    extra = {"width": 32, "num_heads": 4, "depth": 1} if name == "transformer" else {}
    extra = {"width": 64} if name == "unet" else extra
    decoder = build_part(DECODERS, {"type": name, **extra}, out_channels=out[0], out_stride=out[1], **spec)
    visible = torch.rand(2, 2, 2) > 0.5
    pyramid = MaskPyramid(visible, 32)
    prediction = decoder(features_for(spec), [pyramid.at(s) for s in spec["in_strides"]])
    assert prediction.shape == (2, out[0], 64 // out[1], 64 // out[1])


def test_masked_sites_get_the_level_mask_token():
    decoder = build_part(DECODERS, "linear", out_channels=3, out_stride=1, **ONE_LEVEL)
    features = torch.randn(1, 48, 4, 4)
    visible = torch.zeros(1, 4, 4, dtype=torch.bool)
    visible[0, 0, 0] = True
    dense = decoder.densify(0, features, visible)
    assert torch.equal(dense[0, :, 0, 0], features[0, :, 0, 0])
    assert torch.equal(dense[0, :, 3, 3], decoder.mask_tokens[0].flatten())


def test_level_count_and_order_are_checked():
    with pytest.raises(ValueError, match="1-4 levels"):
        build_part(DECODERS, "unet", in_channels=[8] * 5, in_strides=[2, 4, 8, 16, 32], out_channels=3, out_stride=1)
    with pytest.raises(ValueError, match="fine to coarse"):
        build_part(DECODERS, "unet", in_channels=[8, 8], in_strides=[16, 8], out_channels=3, out_stride=1)


def test_a_context_free_decoder_behind_a_sparse_encoder_warns_that_the_encoder_cannot_learn():
    from hiermae.model.pretrainer import build_pretrainer

    with pytest.warns(UserWarning, match="encoder gets no gradient"):
        model = build_pretrainer("resnet18", sparse=True, input_size=64, decoder=dict(type="linear"))
    model(torch.randn(2, 3, 64, 64), mode="loss")["loss"].backward()
    assert all(p.grad is None or not p.grad.any() for p in model.encoder.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_pretrainer("resnet18", sparse=False, input_size=64, decoder=dict(type="linear"))
