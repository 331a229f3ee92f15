"""Read the encoder out of a pretraining checkpoint (or a plain timm state dict) and check it against timm.

A pretraining checkpoint is an mmengine checkpoint of `MaskedPretrainer`: encoder weights live under
`encoder.model.<timm name>`, and its stored model config (read as data, never run: `hiermae.checkpoints.literal_config`)
names the backbone and input size; its stem's weight, the input channels. Files are read by
`hiermae.checkpoints.safe_load`, so a checkpoint cannot run code.
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from hiermae.backbones import encoder_family
from hiermae.checkpoints import (
    CheckpointError,
    key_mismatches,
    load_checkpoint_file,
    model_config,
    refuse_diverged_checkpoint,
)
from hiermae.downstream.input_channels import stem_channels

ENCODER_PREFIX = "encoder.model."
DEFAULT_INPUT_SIZE = 224
SIZE_DEPENDENT = ("relative_position_bias_table", "pos_embed")  # resized to the target by `resize.fit_to_target`


@dataclass
class EncoderWeights:
    """Encoder weights under timm's names, with the backbone and the input size they were trained at."""

    backbone: str
    input_size: int
    state_dict: dict[str, torch.Tensor]
    dropped: list[str]  # checkpoint keys that are not encoder weights (decoder, mask tokens, classifier head)
    in_chans: int = 3  # input channels the stem reads


def create_timm_model(name: str, input_size: int = DEFAULT_INPUT_SIZE, **timm_kwargs: object) -> torch.nn.Module:
    """`timm.create_model(name)` for `input_size` px images, randomly initialised; `timm_kwargs` (e.g.
    `num_classes`, `drop_path_rate`) go to timm."""
    return encoder_family(name).create_timm_model(name, input_size, **timm_kwargs)


def split_encoder_weights(
    state_dict: dict[str, torch.Tensor], backbone: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Keep the encoder's timm weights of a pretrainer state dict (or all of a plain timm one), minus the head of
    `backbone`'s family."""
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith(ENCODER_PREFIX) for k in tensors):
        weights = {k[len(ENCODER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    else:
        weights = {k.removeprefix("module."): v for k, v in tensors.items()}
    is_head_key = encoder_family(backbone).is_head_key
    kept = {k: v for k, v in weights.items() if not is_head_key(k)}
    dropped = sorted(set(state_dict) - {ENCODER_PREFIX + k for k in kept} - set(kept))
    return kept, dropped


def read_encoder_weights(
    path: str | Path, backbone: str | None = None, input_size: int | None = None, *, trust: bool = False
) -> EncoderWeights:
    """Load a pretraining checkpoint or timm state dict and check it is a complete `backbone` encoder.

    The backbone and input size come from the arguments, else from the checkpoint's model config (or the `meta`
    of an export); the weights must match `timm.create_model(backbone)` minus its head, key for key and shape, and
    be finite, else CheckpointError. `trust` unpickles the file in full (`--trust-checkpoint`).
    The input channels C are read from the stem's weight; the check is against timm's model built for C.
    """
    checkpoint = load_checkpoint_file(path, trust=trust)
    model_cfg = model_config(checkpoint, str(path)) or {}
    meta = checkpoint.get("meta") if isinstance(checkpoint.get("meta"), dict) else {}
    backbone = backbone or model_cfg.get("backbone") or meta.get("backbone")
    if not backbone:
        raise CheckpointError(f"checkpoint {path} does not name its backbone (no meta cfg): pass --backbone NAME")
    try:
        encoder_family(backbone)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from error
    input_size = input_size or model_cfg.get("input_size") or meta.get("input_size") or DEFAULT_INPUT_SIZE
    state_dict = checkpoint.get("state_dict", checkpoint.get("model", checkpoint))
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"checkpoint {path} has no state dict")
    weights, dropped = split_encoder_weights(state_dict, backbone)
    in_chans = stem_channels(weights, backbone) or 3
    check_against_timm(weights, backbone, input_size, source=str(path), in_chans=in_chans)
    refuse_diverged_checkpoint(weights, f"checkpoint {path}", "weights", "encoder tensors")
    return EncoderWeights(backbone, int(input_size), weights, dropped, in_chans)


def check_against_timm(
    weights: dict[str, torch.Tensor], backbone: str, input_size: int, source: str, in_chans: int = 3
) -> None:
    """Raise CheckpointError unless `weights` has exactly the non-head keys and shapes of timm's `backbone` with
    `in_chans` input channels.

    Size-dependent tensors (Swin bias tables, ViT position embeddings) may differ; export resizes them.
    """
    family = encoder_family(backbone)
    model = family.create_timm_model(backbone, input_size, in_chans=in_chans)
    reference = {k: v for k, v in model.state_dict().items() if not family.is_head_key(k)}
    missing, unexpected, wrong_shape = key_mismatches(reference, weights, shape_exempt=SIZE_DEPENDENT)
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{source} is not a {backbone} encoder at {input_size} px with {in_chans} input channels: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}, "
            f"{len(wrong_shape)} shape mismatches {wrong_shape[:5]}"
        )
