"""Decoders: from the encoder's visible-site stage maps to a prediction map of the target's shape.

Every decoder first densifies: masked sites of each level get that level's learned mask token. The default
`UNetDecoder` serves every backbone (1–4 levels) by fusing coarse to fine, as SparK does (Tian et al., 2023);
`TransformerDecoder` (MAE) and `LinearDecoder` (SimMIM) are the single-scale alternatives.
"""


import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from hiermae.utils import DECODERS


class Decoder(nn.Module):
    """Base class: one learned mask token per pyramid level, and a pixel-shuffle head to the target stride."""

    uses_context = True  # whether a masked unit's prediction can draw on its visible neighbours

    def __init__(self, in_channels: list[int], in_strides: list[int], out_channels: int, out_stride: int) -> None:
        super().__init__()
        if not 1 <= len(in_channels) == len(in_strides) <= 4:
            raise ValueError(f"a decoder takes 1-4 levels, got channels {in_channels} and strides {in_strides}")
        if sorted(in_strides) != list(in_strides):
            raise ValueError(f"levels must be ordered fine to coarse, got strides {in_strides}")
        self.in_strides = list(in_strides)
        self.out_channels = out_channels
        self.out_stride = out_stride
        self.mask_tokens = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1)) for c in in_channels])
        for token in self.mask_tokens:
            trunc_normal_(token, std=0.02)

    def densify(self, level: int, features: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Put the level's mask token at every masked site of a B×C×H×W map."""
        keep = visible.unsqueeze(1)
        return torch.where(keep, features, self.mask_tokens[level].to(features.dtype))

    def make_head(self, channels: int, stride: int) -> nn.Module:
        """Map a `stride`-px site grid to the target grid: pixel-shuffle up, or a strided conv down (HOG cells)."""
        if self.out_stride >= stride:
            if self.out_stride % stride:
                raise ValueError(f"decoder stride {stride} must divide the target stride {self.out_stride}")
            factor = self.out_stride // stride
            return nn.Conv2d(channels, self.out_channels, factor, stride=factor)
        if stride % self.out_stride:
            raise ValueError(f"target stride {self.out_stride} must divide the decoder's stride {stride}")
        factor = stride // self.out_stride
        return nn.Sequential(nn.Conv2d(channels, self.out_channels * factor**2, 1), nn.PixelShuffle(factor))

    def forward(self, features: list[torch.Tensor], visible: list[torch.Tensor]) -> torch.Tensor:
        """`features[i]`: B×C_i×H_i×W_i (zero at masked sites); `visible[i]`: B×H_i×W_i bool."""
        raise NotImplementedError


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3×3 conv-BN-ReLU layers."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@DECODERS.register_module(name="unet")
class UNetDecoder(Decoder):
    """Coarse-to-fine fusion: upsample the running map, add the next finer level, refine with convs."""

    def __init__(
        self,
        in_channels: list[int],
        in_strides: list[int],
        out_channels: int,
        out_stride: int,
        width: int = 256,
        min_width: int = 32,
    ) -> None:
        super().__init__(in_channels, in_strides, out_channels, out_stride)
        levels = len(in_channels)
        widths = [max(min_width, width >> (levels - 1 - i)) for i in range(levels)]
        self.lateral = nn.ModuleList(nn.Conv2d(c, w, 1) for c, w in zip(in_channels, widths))
        self.refine = nn.ModuleList(conv_block(w, w) for w in widths)
        ratios = [coarse // fine for fine, coarse in zip(in_strides, in_strides[1:])]
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], ratio, stride=ratio) for i, ratio in enumerate(ratios)
        )
        self.head = self.make_head(widths[0], in_strides[0])

    def forward(self, features: list[torch.Tensor], visible: list[torch.Tensor]) -> torch.Tensor:
        dense = [self.densify(i, f, v) for i, (f, v) in enumerate(zip(features, visible))]
        running = self.refine[-1](self.lateral[-1](dense[-1]))
        for level in range(len(dense) - 2, -1, -1):
            running = self.upsample[level](running) + self.lateral[level](dense[level])
            running = self.refine[level](running)
        return self.head(running)


def sincos_position_embedding(height: int, width: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (1×(H·W)×dim), half the channels per axis (MAE's recipe)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
    frequencies = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    parts = []
    for axis in (ys, xs):
        angles = axis.flatten()[:, None] * frequencies[None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).unsqueeze(0)


@DECODERS.register_module(name="transformer")
class TransformerDecoder(Decoder):
    """MAE's light decoder on the coarsest level: transformer blocks over all sites, masked ones as tokens."""

    def __init__(
        self,
        in_channels: list[int],
        in_strides: list[int],
        out_channels: int,
        out_stride: int,
        width: int = 256,
        depth: int = 4,
        num_heads: int = 8,
    ) -> None:
        super().__init__(in_channels[-1:], in_strides[-1:], out_channels, out_stride)
        self.embed = nn.Linear(in_channels[-1], width)
        self.blocks = nn.Sequential(*[Block(width, num_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = self.make_head(width, in_strides[-1])

    def forward(self, features: list[torch.Tensor], visible: list[torch.Tensor]) -> torch.Tensor:
        dense = self.densify(0, features[-1], visible[-1])
        batch, _, height, width = dense.shape
        tokens = self.embed(dense.flatten(2).transpose(1, 2))
        tokens = tokens + sincos_position_embedding(height, width, tokens.shape[-1]).to(tokens)
        tokens = self.norm(self.blocks(tokens))
        return self.head(tokens.transpose(1, 2).reshape(batch, -1, height, width))


@DECODERS.register_module(name="linear")
class LinearDecoder(Decoder):
    """SimMIM's linear head on the coarsest level.

    A per-site linear map has no spatial context: it reconstructs masked units only from what the encoder put
    at those sites. hiermae encoders return zeros (then the mask token) there, so this decoder is the ablation
    floor that shows how much a decoder with context adds: behind a sparse encoder the loss on masked units does
    not depend on the encoder at all, which therefore gets no gradient and keeps its initial weights (measured:
    its kNN accuracy equals random init's, `docs/results/ablations-cpu.md`). With the dense reference
    (`sparse=False`, SimMIM) the encoder fills masked sites itself and the head trains it.
    """

    uses_context = False

    def __init__(self, in_channels: list[int], in_strides: list[int], out_channels: int, out_stride: int) -> None:
        super().__init__(in_channels[-1:], in_strides[-1:], out_channels, out_stride)
        self.head = self.make_head(in_channels[-1], in_strides[-1])

    def forward(self, features: list[torch.Tensor], visible: list[torch.Tensor]) -> torch.Tensor:
        return self.head(self.densify(0, features[-1], visible[-1]))
