"""C input channels in the model: every family's encoders, sparse against dense, the pretrainer, the targets and the
data preprocessor, at C = 1 (grey) and C = 4 (multispectral)."""

from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS

from hiermae.backbones.build import build_encoder
from hiermae.data.preprocess import MIMDataPreprocessor
from hiermae.masking.masks import MaskPyramid
from hiermae.model.pretrainer import build_pretrainer
from hiermae.model.targets import HOGTarget, NormalizedPixelTarget

from equivalence import (
    compare_encoders,
    masked_pixel_sensitivity,
    paired_encoders,
    randomize_,
    relative_error,
    visible_units,
)

REPO = Path(__file__).resolve().parents[1]
CHANNELS = (1, 4)
BATCH, TOLERANCE = 2, 1e-4
CNNS = ("resnet18", "convnext_atto", "mobilenetv3_large_100", "efficientnet_b0")
SWIN, VIT = "swin_tiny_patch4_window7_224", "vit_tiny_patch16_224"
FAMILIES = (*CNNS, SWIN, VIT)


def images_for(channels: int, size: int, seed: int = 0, batch: int = BATCH) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("name", CNNS)
def test_cnn_sparse_matches_dense_reference(name: str, channels: int) -> None:
    """Outputs, input and parameter gradients, BatchNorm statistics; float64, training mode, 60 % masked."""
    sparse, dense = paired_encoders(name, 96, in_chans=channels)
    sparse, dense = sparse.double().train(), dense.double().train()
    visible = visible_units(BATCH, (3, 3), 0.6)
    errors = compare_encoders(sparse, dense, images_for(channels, 96).double(), visible)
    assert max(errors.values()) <= TOLERANCE, errors


def transformer_pair(name: str, channels: int, input_size: int = 64) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(sparse, dense reference) with the same randomized weights; the dense one also holds its mask token."""
    dense = build_encoder(name, sparse=False, input_size=input_size, in_chans=channels)
    randomize_(dense, 0)
    sparse = build_encoder(name, sparse=True, input_size=input_size, in_chans=channels)
    missing, unexpected = sparse.load_state_dict(dense.state_dict(), strict=False)
    assert not missing and unexpected == ["mask_token"]
    return sparse.train(), dense.train()


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("name", [SWIN, VIT])
def test_transformer_sparse_matches_dense_reference_with_nothing_masked(name: str, channels: int) -> None:
    """Mask tokens are the dense reference's only difference: with every unit visible the two paths compute the
    same outputs and gradients (the mask token's own gradient is zero)."""
    sparse, dense = transformer_pair(name, channels)
    images, visible = images_for(channels, 64), visible_units(BATCH, (2, 2), 0.0)
    results = []
    for encoder in (sparse, dense):
        pixels = images.clone().requires_grad_(True)
        torch.manual_seed(0)
        outputs = encoder(pixels, visible)
        sum((output * (index + 1)).square().mean() for index, output in enumerate(outputs)).backward()
        grads = {k: p.grad for k, p in encoder.named_parameters() if k != "mask_token" and p.grad is not None}
        results.append((outputs, pixels.grad, grads))
    (out_s, input_s, grads_s), (out_d, input_d, grads_d) = results
    assert grads_s.keys() == grads_d.keys() and len(grads_s) > 10
    assert max(relative_error(s, d) for s, d in zip(out_s, out_d, strict=True)) <= TOLERANCE
    assert relative_error(input_s, input_d) <= TOLERANCE
    assert max(relative_error(grads_s[k], grads_d[k]) for k in grads_d) <= 1e-3
    assert float(dense.mask_token.grad.abs().max()) == 0.0


@pytest.mark.parametrize("channels", CHANNELS)
def test_masked_vit_equals_timm_blocks_on_each_samples_visible_tokens(channels: int) -> None:
    """With masks, the sparse ViT is MAE: per sample, timm's blocks over the class token and the visible patches."""
    sparse, _ = transformer_pair(VIT, channels)
    sparse.eval()
    images, visible = images_for(channels, 64), visible_units(BATCH, (2, 2), 0.5)
    model = sparse.model
    with torch.no_grad():
        outputs = sparse(images, visible)[0]  # B C 4 4
        tokens = model.patch_embed(images) + model.pos_embed[:, 1:]
        keep = MaskPyramid(visible, 32).at(16).flatten(1)
        for b in range(BATCH):
            prefix = model.cls_token + model.pos_embed[:, :1]
            expected = model.norm(model.blocks(torch.cat([prefix, tokens[b : b + 1, keep[b]]], 1)))[0, 1:]
            got = outputs[b].flatten(1).t()[keep[b]]
            assert relative_error(got, expected) <= TOLERANCE


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("name", FAMILIES)
def test_pixels_inside_masked_units_change_nothing(name: str, channels: int) -> None:
    """CNNs in training mode (BatchNorm over visible sites); transformers in eval mode (training mode only adds
    Swin's stochastic depth, which would draw differently in the two runs)."""
    encoder = build_encoder(name, sparse=True, input_size=64, in_chans=channels).train(name in CNNS)
    visible = visible_units(BATCH, (2, 2), 0.5)
    assert masked_pixel_sensitivity(encoder, images_for(channels, 64), visible) <= 1e-6


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("name", FAMILIES)
def test_c_channel_pretrainer_trains_and_its_weights_load_into_timm(name: str, channels: int) -> None:
    model = build_pretrainer(name, input_size=64, mask_ratio=0.5, in_chans=channels)
    images = images_for(channels, 64)
    output = model(images, mode="tensor")
    output["loss"].backward()
    assert torch.isfinite(output["loss"]) and output["pred"].shape == images.shape
    stem_grads = [p.grad for p in model.encoder.parameters() if p.grad is not None and p.dim() == 4][:1]
    assert stem_grads and stem_grads[0].shape[1] == channels and bool(stem_grads[0].abs().sum() > 0)
    family = type(model.encoder)
    reference = family.drop_head(family.create_timm_model(name, 64, num_classes=0, in_chans=channels))
    reference.load_state_dict(model.encoder.timm_state_dict())


def test_wrong_channel_count_is_a_named_error() -> None:
    encoder = build_encoder("resnet18", input_size=64, in_chans=1)
    with pytest.raises(ValueError, match="1 channel"):
        encoder(images_for(3, 64), visible_units(BATCH, (2, 2), 0.5))
    model = build_pretrainer("convnext_atto", input_size=64, in_chans=4)
    with pytest.raises(ValueError, match="4 channels"):
        model(images_for(3, 64))
    with pytest.raises(ValueError, match="in_chans"):
        build_encoder("resnet18", in_chans=0)


def test_unit_normalisation_is_per_channel() -> None:
    """Bands of very different scales each get mean 0 and standard deviation 1 in every unit."""
    images = images_for(4, 64) * torch.tensor([1.0, 10.0, 100.0, 1000.0]).view(1, 4, 1, 1) + 7
    target = NormalizedPixelTarget(in_chans=4)(images, 32)
    units = target.view(BATCH, 4, 2, 32, 2, 32)
    assert torch.allclose(units.mean((3, 5)), torch.zeros(()), atol=1e-4)
    assert torch.allclose(units.std((3, 5), unbiased=False), torch.ones(()), atol=1e-3)
    restored = NormalizedPixelTarget(in_chans=4).to_image(target, images, 32)
    assert relative_error(restored, images) <= 1e-5


def test_joint_unit_normalisation_stays_available_and_equals_per_channel_on_repeated_grey() -> None:
    grey = images_for(1, 64).expand(-1, 3, -1, -1)
    joint = NormalizedPixelTarget(in_chans=3, per_channel=False)(grey, 32)
    assert relative_error(joint, NormalizedPixelTarget(in_chans=3)(grey, 32)) <= 1e-3  # n - 1 of 3·32² vs 32²
    colour = images_for(3, 64) * torch.tensor([1.0, 5.0, 9.0]).view(1, 3, 1, 1)
    assert relative_error(NormalizedPixelTarget(per_channel=False)(colour, 32),
                          NormalizedPixelTarget()(colour, 32)) > 0.1  # fmt: skip


def test_targets_and_decoder_predict_c_channels() -> None:
    assert HOGTarget(in_chans=1).channels == 9 and HOGTarget(in_chans=4, bins=6).channels == 24
    assert HOGTarget(in_chans=4, bins=6)(images_for(4, 64), 32).shape == (BATCH, 24, 8, 8)
    model = build_pretrainer("resnet18", input_size=64, in_chans=4, target="hog")
    assert model.decoder.out_channels == 36
    with pytest.raises(ValueError, match="in_chans"):
        build_pretrainer("resnet18", input_size=64, in_chans=4, target=dict(type="pixels", in_chans=3))


def test_preprocessor_takes_c_means_and_stds() -> None:
    pre = MIMDataPreprocessor(mean=[1.0, 2.0, 3.0, 4.0], std=[1.0, 2.0, 4.0, 8.0], channels=4, flip_prob=0.0)
    pixels = torch.full((4, 32, 32), 8, dtype=torch.uint8)
    out = pre({"inputs": [pixels, pixels]})["inputs"]
    assert out.shape == (2, 4, 32, 32) and out[0, :, 0, 0].tolist() == [7.0, 3.0, 1.25, 0.5]
    with pytest.raises(ValueError, match="4 channels.*3 values"):
        MIMDataPreprocessor(mean=[1.0, 2.0, 3.0], std=[1.0, 2.0, 3.0, 4.0], channels=4)
    grey = MIMDataPreprocessor(mean=[72.9], std=[90.0], channels=1)
    with pytest.raises(ValueError, match="1 channel.*3"):
        grey({"inputs": [torch.zeros(3, 32, 32, dtype=torch.uint8)]})


def test_pretrainer_hands_its_channels_to_the_preprocessor() -> None:
    pre = dict(type="MIMDataPreprocessor", mean=[72.9], std=[90.0])
    model = build_pretrainer("resnet18", input_size=64, in_chans=1, data_preprocessor=pre)
    assert model.data_preprocessor.channels == 1
    with pytest.raises(ValueError, match="4 channels.*1 value"):
        build_pretrainer("resnet18", input_size=64, in_chans=4, data_preprocessor=pre)


def test_a_config_sets_the_channels_by_name() -> None:
    cfg = Config.fromfile(str(REPO / "configs/pretrain/hiermae_resnet18_64px_fashionmnist.py"))
    assert cfg.model.in_chans == 3
    grey_preprocessor = dict(cfg.model.data_preprocessor, mean=[72.9], std=[90.0])
    model = MODELS.build(dict(cfg.model, in_chans=1, data_preprocessor=grey_preprocessor))
    assert model.encoder.model.conv1.in_channels == 1 and model.data_preprocessor.channels == 1
    assert model.decoder.out_channels == 1
