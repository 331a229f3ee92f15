"""Swin adapter: equal to timm with nothing masked, equal to a per-window brute force with masks, mask-blind."""

import dataclasses
import re

import pytest
import timm
import torch

from hiermae.backbones.build import build_encoder
from hiermae.backbones.swin import SwinEncoder
from hiermae.masking.masks import MaskPyramid
from hiermae.utils.registry import MASK_GENERATORS

TINY = "swin_tiny_patch4_window7_224"
# a small Swin: window 4 at 128 px (grids 32, 16, 8, 4), and window 7 at 64 px (timm pads 16 -> 21 and 8 -> 14)
SMALL = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))
SMALL_CONFIGS = {"window4_128px": (128, dict(SMALL, window_size=4)), "window7_64px": (64, dict(SMALL, window_size=7))}


def small_encoder(config: str, sparse: bool = True, channels: int = 3) -> SwinEncoder:
    """A small Swin for `channels`-channel images whose every weight is perturbed, so zero-initialised biases
    cannot hide a mistake."""
    torch.manual_seed(0)
    input_size, kwargs = SMALL_CONFIGS[config]
    encoder = SwinEncoder(TINY, sparse=sparse, input_size=input_size, in_chans=channels, **kwargs).eval()
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return encoder


def timm_features(encoder: SwinEncoder, images: torch.Tensor, seed: int | None = None, **kwargs) -> list[torch.Tensor]:
    """timm's own features_only Swin with the encoder's weights; its NHWC maps permuted to NCHW.

    In eval mode, or in training mode (stochastic depth) with the RNG seeded by `seed` right before the forward.
    """
    reference = timm.create_model(TINY, features_only=True, img_size=encoder.input_size, **kwargs)
    reference.train(seed is not None)
    renamed = {re.sub(r"^layers\.(\d+)", r"layers_\1", k): v for k, v in encoder.timm_state_dict().items()}
    missing, unexpected = reference.load_state_dict(renamed, strict=False)
    assert not missing and all(k.startswith("norm.") for k in unexpected)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        return [feature.permute(0, 3, 1, 2) for feature in reference(images)]


def all_visible(batch: int, input_size: int) -> torch.Tensor:
    return torch.ones(batch, input_size // 32, input_size // 32, dtype=torch.bool)


def max_errors(outputs: list[torch.Tensor], expected: list[torch.Tensor]) -> list[float]:
    assert [o.shape for o in outputs] == [e.shape for e in expected]
    return [float((o - e).abs().max()) for o, e in zip(outputs, expected, strict=True)]


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("config", list(SMALL_CONFIGS))
def test_unmasked_small_swin_equals_timm(config: str, sparse: bool) -> None:
    encoder = small_encoder(config, sparse)
    images = torch.randn(2, 3, encoder.input_size, encoder.input_size)
    with torch.no_grad():
        outputs = encoder(images, all_visible(2, encoder.input_size))
    expected = timm_features(encoder, images, **SMALL_CONFIGS[config][1])
    assert max(max_errors(outputs, expected)) <= 1e-4


@pytest.mark.parametrize("input_size", [224, 64])
def test_unmasked_swin_tiny_equals_timm(input_size: int) -> None:
    torch.manual_seed(0)
    encoder = build_encoder(TINY, sparse=True, input_size=input_size).eval()
    images = torch.randn(1, 3, input_size, input_size)
    with torch.no_grad():
        outputs = encoder(images, all_visible(1, input_size))
    assert encoder.out_channels == [96, 192, 384, 768] and encoder.out_strides == [4, 8, 16, 32]
    assert max(max_errors(outputs, timm_features(encoder, images))) <= 1e-4


def window_attention_by_loops(block: torch.nn.Module, normed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """timm's (shifted) window attention computed window by window over the kept tokens and timm's zero padding.

    Uses timm's own -100 region mask and relative position bias; a plain loop, independent of the packing.
    """
    attn = block.attn
    (window_h, window_w), (shift_h, shift_w) = block.window_size, block.shift_size
    batch, height, width, channels = normed.shape
    shifted = torch.roll(normed, (-shift_h, -shift_w), (1, 2))
    present = torch.roll(keep, (-shift_h, -shift_w), (1, 2))
    pad_h, pad_w = (-height) % window_h, (-width) % window_w
    shifted = torch.nn.functional.pad(shifted, (0, 0, 0, pad_w, 0, pad_h))
    present = torch.nn.functional.pad(present, (0, pad_w, 0, pad_h), value=True)
    bias, region_mask = attn._get_rel_pos_bias()[0], block.get_attn_mask(shifted)
    out = torch.zeros_like(shifted)
    windows_w = shifted.shape[2] // window_w
    for b in range(batch):
        for wy in range(shifted.shape[1] // window_h):
            for wx in range(windows_w):
                rows, cols = slice(wy * window_h, (wy + 1) * window_h), slice(wx * window_w, (wx + 1) * window_w)
                kept = present[b, rows, cols].flatten().nonzero()[:, 0]
                if len(kept) == 0:
                    continue
                tokens = shifted[b, rows, cols].reshape(-1, channels)[kept]
                q, k, v = attn.qkv(tokens).view(len(kept), 3, attn.num_heads, -1).permute(1, 2, 0, 3)
                logits = (q * attn.scale) @ k.transpose(1, 2) + bias[:, kept][:, :, kept]
                if region_mask is not None:
                    logits = logits + region_mask[wy * windows_w + wx][kept][:, kept]
                mixed = (logits.softmax(-1) @ v).transpose(0, 1).reshape(len(kept), -1)
                window_out = torch.zeros(window_h * window_w, channels)
                window_out[kept] = attn.proj(mixed)
                out[b, rows, cols] = window_out.view(window_h, window_w, channels)
    return torch.roll(out[:, :height, :width], (shift_h, shift_w), (1, 2))


def swin_by_loops(encoder: SwinEncoder, images: torch.Tensor, visible: torch.Tensor) -> list[torch.Tensor]:
    """Slow reference: timm's modules on zero-filled dense maps, attention by per-window loops over kept tokens."""
    model, pyramid = encoder.model, MaskPyramid(visible, 32)
    tokens, outputs = model.patch_embed(images), []
    for stage, stride in zip(model.layers, encoder.out_strides, strict=True):
        keep = pyramid.at(stride)
        tokens = stage.downsample(tokens) * keep.unsqueeze(-1)
        for block in stage.blocks:
            tokens = tokens + window_attention_by_loops(block, block.norm1(tokens), keep)
            tokens = (tokens + block.mlp(block.norm2(tokens))) * keep.unsqueeze(-1)
        outputs.append(tokens.permute(0, 3, 1, 2))
    return outputs


def test_training_mode_stochastic_depth_drops_the_samples_timm_drops() -> None:
    torch.manual_seed(0)
    kwargs = dict(SMALL_CONFIGS["window4_128px"][1], drop_path_rate=0.5)
    encoder = SwinEncoder(TINY, sparse=True, input_size=128, **kwargs).train()
    images = torch.randn(4, 3, 128, 128)
    expected = timm_features(encoder, images, seed=1, **kwargs)
    torch.manual_seed(1)
    with torch.no_grad():
        outputs = encoder(images, all_visible(4, 128))
    assert max(max_errors(outputs, expected)) <= 1e-4


@pytest.mark.parametrize("channels", [3, 1, 4])
@pytest.mark.parametrize("mask", ["random", "blockwise", "uniform", "batch_shared"])
@pytest.mark.parametrize("config", list(SMALL_CONFIGS))
def test_masked_equals_per_window_brute_force(config: str, mask: str, channels: int) -> None:
    encoder = small_encoder(config, channels=channels)
    size = encoder.input_size
    images = torch.randn(3, channels, size, size)
    visible = MASK_GENERATORS.build({"type": mask, "mask_ratio": 0.75})(3, (size // 32, size // 32), torch.arange(3))
    with torch.no_grad():
        errors = max_errors(encoder(images, visible), swin_by_loops(encoder, images, visible))
    assert max(errors) <= 1e-4


@pytest.mark.parametrize("channels", [3, 1, 4])
@pytest.mark.parametrize("config", list(SMALL_CONFIGS))
def test_shared_mask_fast_path_equals_the_per_sample_path_with_gradients(config: str, channels: int) -> None:
    """One plan for a batch that shares its mask (GreenMIM's path) against packing every sample (training mode,
    outputs and every parameter and input gradient); both equal the per-window brute force in the test above."""
    encoder = small_encoder(config, channels=channels).train()
    size = encoder.input_size
    visible = MASK_GENERATORS.build({"type": "batch_shared", "mask_ratio": 0.75})(3, (size // 32,) * 2, torch.arange(3))
    images = torch.randn(3, channels, size, size)
    weights = [torch.randn(3, c, size // s, size // s) for c, s in zip(encoder.out_channels, encoder.out_strides)]
    results = []
    for share_masks in (True, False):
        planner = dataclasses.replace(encoder.planner("cpu"), share_masks=share_masks)
        plan = planner(visible)
        assert plan[0].packings[0].samples == (3 if share_masks else 1)
        inputs = images.clone().requires_grad_(True)
        encoder.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same stochastic-depth draws (one per sample) on both paths
        outputs = encoder(inputs, visible, plan)
        sum((o * w).sum() for o, w in zip(outputs, weights, strict=True)).backward()
        grads = [inputs.grad] + [p.grad for p in encoder.parameters() if p.grad is not None]
        results.append(([o.detach() for o in outputs], grads))
    (shared_out, shared_grads), (single_out, single_grads) = results
    assert max(max_errors(shared_out, single_out)) <= 1e-5
    assert len(shared_grads) == len(single_grads) and max(max_errors(shared_grads, single_grads)) <= 1e-4


@pytest.mark.parametrize("config", list(SMALL_CONFIGS))
def test_empty_windows_and_single_visible_unit(config: str) -> None:
    encoder = small_encoder(config)
    size = encoder.input_size
    visible = torch.zeros(2, size // 32, size // 32, dtype=torch.bool)
    visible[0, -1, -1] = True  # one unit: every other window of every stage is empty
    visible[1, 0, :] = True  # a single row of units
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        outputs = encoder(images, visible)
        errors = max_errors(outputs, swin_by_loops(encoder, images, visible))
    assert max(errors) <= 1e-4
    assert all(bool(o[0].abs().sum(0).bool().sum() > 0) for o in outputs)


def test_masked_pixels_change_nothing_and_gradients_reach_the_visible_path() -> None:
    encoder = small_encoder("window7_64px")
    visible = torch.zeros(2, 2, 2, dtype=torch.bool)
    visible[0, 0, 0] = visible[0, 1, 1] = visible[1, 0, 1] = True
    images = torch.randn(2, 3, 64, 64)
    changed = images + 5 * (~MaskPyramid(visible, 32).at(1)).unsqueeze(1)
    outputs, outputs_changed = encoder(images, visible), encoder(changed, visible)
    assert all(torch.equal(a, b) for a, b in zip(outputs, outputs_changed, strict=True))
    sum(o.square().mean() for o in outputs).backward()
    unused = {name for name, _ in encoder.named_parameters() if name.startswith("model.norm.")}
    for name, parameter in encoder.named_parameters():
        if name not in unused:
            assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0), name


def test_dense_reference_zeroes_masked_outputs_and_trains_its_mask_token() -> None:
    encoder = small_encoder("window4_128px", sparse=False)
    visible = MASK_GENERATORS.build({"type": "random", "mask_ratio": 0.6})(2, (4, 4), torch.arange(2))
    outputs = encoder(torch.randn(2, 3, 128, 128), visible)
    pyramid = MaskPyramid(visible, 32)
    for output, stride in zip(outputs, encoder.out_strides, strict=True):
        masked = ~pyramid.at(stride).unsqueeze(1).expand_as(output)
        assert bool((output[masked] == 0).all()) and bool(output[~masked].abs().sum() > 0)
    sum(o.sum() for o in outputs).backward()
    assert encoder.mask_token.grad is not None and bool(encoder.mask_token.grad.abs().sum() > 0)
    assert not any("mask_token" in name for name in encoder.timm_state_dict())


def test_bf16_autocast_runs_close_to_float32() -> None:
    encoder = small_encoder("window7_64px")
    images = torch.randn(2, 3, 64, 64)
    visible = MASK_GENERATORS.build({"type": "random", "mask_ratio": 0.5})(2, (2, 2), torch.arange(2))
    with torch.no_grad():
        expected = encoder(images, visible)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = encoder(images, visible)
    for output, reference in zip(outputs, expected, strict=True):
        assert torch.isfinite(output).all()
        assert float((output.float() - reference).abs().max()) <= 0.1 * float(reference.abs().max())


def test_weights_are_timms_and_move_between_sparse_and_dense() -> None:
    sparse, dense = small_encoder("window4_128px"), small_encoder("window4_128px", sparse=False)
    reference = timm.create_model(TINY, num_classes=0, img_size=128, **SMALL_CONFIGS["window4_128px"][1])
    reference.load_state_dict(sparse.timm_state_dict())
    dense.load_state_dict(sparse.state_dict(), strict=False)
    assert all(
        torch.equal(a, b)
        for a, b in zip(sparse.timm_state_dict().values(), dense.timm_state_dict().values(), strict=True)
    )


def test_other_input_sizes_run_with_the_windows_of_input_size_as_timm_does() -> None:
    encoder = small_encoder("window4_128px")
    images = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        outputs = encoder(images, all_visible(1, 96))
    kwargs = dict(SMALL_CONFIGS["window4_128px"][1], strict_img_size=False)
    assert max(max_errors(outputs, timm_features(encoder, images, **kwargs))) <= 1e-4


def test_wrong_inputs_raise() -> None:
    encoder = small_encoder("window4_128px")
    with pytest.raises(ValueError, match="divisible"):
        encoder(torch.randn(1, 3, 100, 100), all_visible(1, 100))
    with pytest.raises(ValueError, match="divisible"):
        SwinEncoder(TINY, input_size=100)
    assert SwinEncoder.supports("swin_base_patch4_window12_384") and not SwinEncoder.supports("swinv2_tiny_window8_256")
