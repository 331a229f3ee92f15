"""hiermae.model.flops.pretraining_flops and tools/flops.py: per-image forward FLOPs of masked pretraining."""

import functools
import importlib.util
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from hiermae.model.flops import (
    PretrainingFlops,
    count_flops,
    dense_inference_flops,
    measure_pretraining_flops,
    pretraining_flops,
)
from hiermae.model.pretrainer import MaskedPretrainer, build_pretrainer

SIZE = 64  # a 2×2 grid of 32-px units: mask ratio 0.75 keeps one unit per image
DECODERS = {"unet": {"type": "unet", "width": 32}, "transformer": {"type": "transformer", "width": 32, "depth": 1},
            "linear": {"type": "linear"}}  # fmt: skip
SWIN = "swin_tiny_patch4_window7_224"
VIT = "vit_tiny_patch16_224"


@functools.cache
def flops(backbone: str, sparse: bool, mask_ratio: float = 0.75, decoder: str = "unet") -> PretrainingFlops:
    """Cached: several tests read the same figures."""
    return pretraining_flops(backbone, SIZE, mask_ratio, sparse=sparse, images=2, decoder=DECODERS[decoder])


class Reconstruction(nn.Module):
    """A whole `reconstruct` call as one module, to count it independently of `measure_pretraining_flops`."""

    def __init__(self, model: MaskedPretrainer) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        return self.model.reconstruct(images, visible)["loss"]


class Features(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(images)


@pytest.mark.parametrize("backbone", [VIT, "convnext_atto"])
def test_dense_inference_is_timm_forward_features(backbone):
    sizes = {"img_size": SIZE} if backbone == VIT else {}
    model = timm.create_model(backbone, pretrained=False, num_classes=0, **sizes).eval()
    assert dense_inference_flops(backbone, SIZE) == count_flops(Features(model), (torch.zeros(1, 3, SIZE, SIZE),))


def test_split_matches_separate_counts_of_encoder_and_reconstruct():
    """One trace split by module scope gives what counting the encoder and the whole call separately gives."""
    model = build_pretrainer("resnet18", input_size=SIZE, decoder=DECODERS["unet"]).train()
    images = torch.randn(2, 3, SIZE, SIZE)
    visible = model.draw_mask(images, torch.tensor([3, 4]))
    encoder, decoder = measure_pretraining_flops(model, images, visible)
    assert encoder == count_flops(model.encoder, (images, visible))
    assert encoder + decoder == count_flops(Reconstruction(model), (images, visible))


def test_sparse_resnet_encoder_costs_the_visible_fraction_of_dense():
    """Sparse convs compute at visible sites only; unit borders may add or drop a little (halo, missing pairs)."""
    result = flops("resnet18", True)
    assert 0.9 * 0.25 <= result.encoder_ratio <= 1.2 * 0.25
    assert result.total == result.encoder + result.decoder
    assert result.total_ratio == pytest.approx(result.total / result.dense_inference)


@pytest.mark.parametrize(("backbone", "decoder"), [("resnet18", "unet"), (VIT, "transformer")])
def test_dense_reference_encoder_costs_dense_inference(backbone, decoder):
    """Blending in the mask token is elementwise (0 multiply-adds): the dense reference does inference's work."""
    result = flops(backbone, False, decoder=decoder)
    assert result.encoder == pytest.approx(result.dense_inference, rel=1e-6)


@pytest.mark.parametrize(("backbone", "decoder"), [("resnet18", "unet"), (VIT, "transformer")])
def test_decoder_cost_does_not_depend_on_the_encoder_path(backbone, decoder):
    """The decoder always sees a full map (mask tokens at masked sites), sparse encoder or not."""
    sparse, dense = flops(backbone, True, decoder=decoder), flops(backbone, False, decoder=decoder)
    assert sparse.decoder == dense.decoder > 0
    assert sparse.decoder_parameters == dense.decoder_parameters > 0
    assert sparse.dense_inference == dense.dense_inference


def test_vit_token_dropping_costs_about_the_visible_fraction():
    """MAE: 4 of 16 patch tokens (+ the class token) enter the blocks; the patch embedding still sees all 16."""
    assert 0.25 < flops(VIT, True, decoder="transformer").encoder_ratio < (4 + 1) / (16 + 1) + 0.03


def test_sparse_swin_costs_less_than_dense_inference():
    """Visible tokens only, attention packed per window; the dense grid is padded to whole 7×7 windows at 64 px."""
    assert 0.1 < flops(SWIN, True).encoder_ratio < 0.35


def test_more_masking_costs_less_in_the_encoder_only():
    results = [flops("resnet18", True, ratio, decoder="linear") for ratio in (0.25, 0.5, 0.75)]
    encoders = [result.encoder for result in results]
    assert encoders == sorted(encoders, reverse=True) and len(set(encoders)) == 3
    assert len({result.decoder for result in results}) == 1


def test_cli_prints_the_api_figures(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("flops_tool", Path(__file__).parents[1] / "tools" / "flops.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["resnet18", "--input-size", str(SIZE), "--decoder", "linear", "--json", str(tmp_path / "f.json")])
    printed = capsys.readouterr().out
    sparse, dense = flops("resnet18", True, decoder="linear"), flops("resnet18", False, decoder="linear")
    assert printed.startswith("resnet18:")
    rows = {line.split("|")[1].strip(): line for line in printed.splitlines() if line.startswith("| ")}
    assert f"| {sparse.dense_inference / 1e9:.3f} |" in rows["dense inference (nothing masked)"]
    for name, result in (("pretraining, hiermae (sparse)", sparse), ("pretraining, dense reference", dense)):
        figures = (result.encoder, result.decoder, result.total)
        expected = " | ".join(f"{value / 1e9:.3f}" for value in figures) + f" | {result.encoder_ratio:.2f} |"
        assert expected in rows[name]
    assert (tmp_path / "f.json").read_text().count('"encoder_ratio"') == 2
