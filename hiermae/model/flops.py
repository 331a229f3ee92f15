"""FLOPs actually computed by an encoder: fvcore's traced count plus what custom ops report while running.

Convention (fvcore's): one fused multiply-add counts as one FLOP; elementwise ops and data movement (gathers,
scatters) count zero. fvcore counts every traced matmul, conv and norm from its shapes, which is exactly the work
done for the sparse path too: its convs run on visible-site rows or unit tiles. Two kinds of op need help:

- `aten::scaled_dot_product_attention` (packed window attention in Swin, ViT) gets a handle here;
- ops inside custom autograd Functions or extensions (spconv) trace as opaque `prim::PythonOp` nodes whose
  shapes do not tell the work (spconv's work is its number of index pairs), so such ops call
  `hiermae.utils.flop_recorder.record_flops` while counting is active, and `count_flops` adds what they recorded.

`pretraining_flops` puts that count in context: per image, what masked pretraining costs (encoder on the
visible units, plus decoder, target and loss) against the plain encoder on the whole image.
"""

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from hiermae.backbones import build_encoder
from hiermae.model.pretrainer import MaskedPretrainer, build_pretrainer
from hiermae.utils import mix_seed, recording


def sdpa_flop_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """scaled_dot_product_attention: QKᵀ (L·S·E) plus attention × V (L·S·Ev) per batch and head."""
    from fvcore.nn.jit_handles import get_shape

    query, key, value = (get_shape(inputs[i]) for i in range(3))
    batch = math.prod(query[:-2])
    length, embed, source, value_dim = query[-2], query[-1], key[-2], value[-1]
    return batch * length * source * (embed + value_dim)


def zero_flop_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """For opaque custom ops whose work is reported through `record_flops` instead."""
    return 0


CUSTOM_OP_HANDLES = {
    "aten::scaled_dot_product_attention": sdpa_flop_handle,
    "prim::PythonOp.SubMConvFunction": zero_flop_handle,
    "prim::PythonOp.SparseConvFunction": zero_flop_handle,
}


def traced_flops(module: nn.Module, inputs: tuple[Any, ...]) -> tuple[FlopCountAnalysis, int]:
    """Trace one `module(*inputs)` call: fvcore's analysis (per-module counts) and the FLOPs ops recorded."""
    with recording() as recorded, torch.no_grad():
        analysis = FlopCountAnalysis(module, inputs).set_op_handle(**CUSTOM_OP_HANDLES)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        analysis.total()  # runs the trace while recording is active
    return analysis, recorded[0]


def count_flops(module: nn.Module, inputs: tuple[Any, ...]) -> int:
    """Total FLOPs (multiply-adds) of one `module(*inputs)` call, in the module's current train/eval mode."""
    analysis, recorded = traced_flops(module, inputs)
    return int(analysis.total()) + recorded


@dataclass(frozen=True)
class PretrainingFlops:
    """Forward FLOPs per image of one masked-pretraining step, next to dense inference with the same encoder.

    Multiply-adds as `count_flops` counts them; a training step (forward + backward) costs about 3× these.
    """

    backbone: str
    input_size: int
    mask_ratio: float
    sparse: bool  # hiermae's sparse path, or the dense reference (SimMIM-style mask token)
    encoder_parameters: int
    decoder_parameters: int
    dense_inference: int  # per image: the plain encoder on the whole image (= timm features, nothing masked)
    encoder: int  # per image: the encoder during masked pretraining (only work actually done)
    decoder: int  # per image: decoder + target + loss during masked pretraining

    @property
    def total(self) -> int:
        """Encoder + decoder (with target and loss): the whole pretraining forward per image."""
        return self.encoder + self.decoder

    @property
    def encoder_ratio(self) -> float:
        """Pretraining encoder cost as a fraction of dense inference (~ visible fraction for the sparse path)."""
        return self.encoder / self.dense_inference

    @property
    def total_ratio(self) -> float:
        """Whole pretraining forward as a fraction of dense inference."""
        return self.total / self.dense_inference

    def as_dict(self) -> dict[str, Any]:
        """The fields plus the derived totals and ratios (for JSON)."""
        derived = {"total": self.total, "encoder_ratio": self.encoder_ratio, "total_ratio": self.total_ratio}
        return asdict(self) | derived


class _Reconstruction(nn.Module):
    """`model.reconstruct` as a module call with tensor outputs, so fvcore can trace it."""

    def __init__(self, model: MaskedPretrainer) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        result = self.model.reconstruct(images, visible)
        return result["loss"], result["prediction"]


def measure_pretraining_flops(model: MaskedPretrainer, images: torch.Tensor, visible: torch.Tensor) -> tuple[int, int]:
    """(encoder, decoder+target+loss) forward FLOPs of one reconstruct() call, whole batch.

    One trace of `reconstruct`: the encoder's share is what fvcore attributes to `model.encoder` plus the work
    custom ops recorded (only hiermae's sparse encoder ops record); the rest of `reconstruct` is the decoder's
    share. Counted in the model's current train/eval mode; the trace runs one forward pass (in training mode
    BatchNorm running statistics move).
    """
    analysis, recorded = traced_flops(_Reconstruction(model), (images, visible))
    encoder = int(analysis.by_module()["model.encoder"]) + recorded
    return encoder, int(analysis.total()) + recorded - encoder


@functools.lru_cache(maxsize=32)
def dense_inference_flops(backbone: str, input_size: int, in_chans: int = 3) -> int:
    """Forward FLOPs of the dense encoder on one whole image: timm's feature computation, nothing masked.

    The dense adapter with every unit visible computes what timm's `forward_features` does; its count equals a
    count of the timm model (ViT, ConvNeXt) except where the adapter's masked BatchNorm (elementwise, zero)
    replaces torch's (ResNet, ~0.3 %) and for Swin's final norm, which the stage outputs leave out.
    Weights do not change the count, so it is cached per (backbone, input size). Counted in eval mode; the dense
    adapters count the same in either mode.
    """
    encoder = build_encoder(backbone, sparse=False, input_size=input_size, in_chans=in_chans).eval()
    grid = input_size // encoder.mask_unit
    everything = torch.ones(1, grid, grid, dtype=torch.bool)
    return count_flops(encoder, (torch.zeros(1, in_chans, input_size, input_size), everything))


def pretraining_flops(
    backbone: str,
    input_size: int = 224,
    mask_ratio: float = 0.75,
    *,
    sparse: bool = True,
    images: int = 4,
    seed: int = 0,
    **pretrainer_cfg: Any,
) -> PretrainingFlops:
    """Per-image forward FLOPs of masked pretraining for a timm backbone, sparse (hiermae) or dense reference.

    `pretrainer_cfg` goes to `build_pretrainer` (in_chans; mask, decoder, target, loss dicts). The figures average one
    batch of `images` samples whose masks come from the model's own mask generator with per-sample seeds
    derived from `seed`, so masks whose visible layout changes the work (block-wise, Swin window packing) are
    averaged as drawn. Counted in training mode (what pretraining runs). Norms count as fvcore counts them:
    torch's layer and batch norm ops about 5 per element (decoder BatchNorm included), the encoders' own
    visible-site BatchNorm (elementwise ops) zero, alike in the sparse and dense paths. Forward only; a training
    step (forward + backward) is about 3× the forward.
    """
    model = build_pretrainer(backbone, sparse=sparse, mask_ratio=mask_ratio, input_size=input_size, **pretrainer_cfg)
    model.train()
    generator = torch.Generator().manual_seed(seed)
    batch = torch.randn(images, model.in_chans, input_size, input_size, generator=generator)
    visible = model.draw_mask(batch, torch.tensor([mix_seed(seed, index) for index in range(images)]))
    encoder, decoder = measure_pretraining_flops(model, batch, visible)
    return PretrainingFlops(
        backbone=backbone,
        input_size=input_size,
        mask_ratio=mask_ratio,
        sparse=sparse,
        encoder_parameters=sum(p.numel() for p in model.encoder.parameters()),
        decoder_parameters=sum(p.numel() for p in model.decoder.parameters()),
        dense_inference=dense_inference_flops(backbone, input_size, model.in_chans),
        encoder=round(encoder / images),
        decoder=round(decoder / images),
    )
