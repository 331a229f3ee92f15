"""Reconstruction grid of a pretraining checkpoint: original | masked input | prediction | prediction pasted.

    python tools/visualize.py CKPT [--out PNG] [--images 8] [--mask-ratio R] [--seed 0] [--image-folder DIR]
                              [--bands R G B] [--trust-checkpoint]

The model (backbone, sparse path, decoder, target) is rebuilt from the model config stored in the checkpoint
(read as data, never run) and its weights are loaded strictly. Images are Fashion-MNIST test images at the
checkpoint's input size, or the first readable images of --image-folder; masks are seeded, so the same command
draws the same grid. --mask-ratio replaces the training ratio to see how the model copes with more or less context.
Images are read with the checkpoint's input channels: a grey model's grid is grey; for other than 1 or 3 channels
--bands picks the three shown as red, green, blue (0-based; default the first three), named in a caption.
"""

import argparse
from pathlib import Path

import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import MODELS

import hiermae  # noqa: F401  (registers hiermae's models and datasets)
from hiermae.checkpoints import CheckpointError, load_checkpoint_file, model_config, refuse_diverged_checkpoint
from hiermae.data import FashionMNIST, ImageFolder
from hiermae.downstream.key_report import strict_load
from hiermae.engine import (
    ToolParser,
    existing_file,
    file_to_write,
    positive_int,
    random_seed,
    ratio,
    save_reconstruction_grid,
    to_unit_range,
)
from hiermae.masking import check_mask_ratio
from hiermae.model import MaskedPretrainer


def load_pretrainer(path: str | Path, mask_ratio: float | None = None, *, trust: bool = False) -> MaskedPretrainer:
    """The pretrainer a checkpoint was trained as, with its weights, in eval mode."""
    checkpoint = load_checkpoint_file(path, trust=trust)
    model_cfg = model_config(checkpoint, str(path))
    if model_cfg is None:
        raise CheckpointError(f"{path} stores no training config: pass a checkpoint written by tools/train.py")
    if model_cfg.get("type") != "MaskedPretrainer":
        raise CheckpointError(f"{path} is a {model_cfg.get('type')!r} checkpoint, not a MaskedPretrainer's")
    if mask_ratio is not None:
        model_cfg["mask"] = dict(model_cfg.get("mask") or {"type": "random"}, mask_ratio=check_mask_ratio(mask_ratio))
    state_dict = checkpoint.get("state_dict", {})
    refuse_diverged_checkpoint(state_dict, f"checkpoint {path}", "weights")
    model = MODELS.build(model_cfg)
    strict_load(model, state_dict, f"pretrainer {model_cfg.get('backbone')}", ())
    return model.eval()


def first_images(model: MaskedPretrainer, count: int, image_folder: str | None) -> list[dict]:
    """`count` dataset items at the model's input size (Fashion-MNIST test split unless a folder is given)."""
    if image_folder:
        dataset = ImageFolder(root=image_folder, image_size=model.input_size, channels=model.in_chans)
    else:
        dataset = FashionMNIST(split="test", image_size=model.input_size, limit=count, channels=model.in_chans)
    return [dataset[i] for i in range(min(count, len(dataset)))]


@torch.no_grad()
def visualize(
    checkpoint: str,
    out: Path,
    images: int,
    mask_ratio: float | None,
    seed: int,
    folder: str | None,
    trust: bool = False,
    bands: tuple[int, int, int] | None = None,
) -> Path:
    """Write the grid for the first `images` images and return its path."""
    model = load_pretrainer(checkpoint, mask_ratio, trust=trust)
    data = model.data_preprocessor(pseudo_collate(first_images(model, images, folder)), training=False)
    inputs = data["inputs"]
    seeds = torch.arange(seed, seed + inputs.shape[0])
    output = model(inputs, mode="tensor", visible=model.draw_mask(inputs, seeds))
    if output["pred"] is None:
        raise SystemExit(f"{checkpoint}: the {type(model.target).__name__} target has no pixel-space prediction")
    to_pixels = model.data_preprocessor
    return save_reconstruction_grid(
        out, to_unit_range(inputs, to_pixels), to_unit_range(output["pred"], to_pixels), output["visible"], model.unit,
        bands,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = ToolParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a pretraining checkpoint (iter_N.pth)")
    parser.add_argument("--out", type=file_to_write, default="reconstruction.png", help="PNG to write")
    parser.add_argument("--images", type=positive_int, default=8, help="number of images (rows)")
    parser.add_argument("--mask-ratio", type=ratio, help="mask ratio to draw (default: the training one)")
    parser.add_argument("--seed", type=random_seed, default=0, help="first mask seed")
    parser.add_argument("--image-folder", help="use the images of this folder instead of Fashion-MNIST")
    parser.add_argument("--bands", type=int, nargs=3, metavar=("R", "G", "B"),
                        help="channels shown as red, green, blue (images of other than 1 or 3 channels)")  # fmt: skip
    parser.add_argument(
        "--trust-checkpoint", action="store_true", help="unpickle CKPT in full (only for files of a trusted origin)"
    )
    args = parser.parse_args(argv)
    try:  # after the other options, whose errors come first
        existing_file(args.checkpoint)
    except argparse.ArgumentTypeError as error:
        parser.error(f"argument checkpoint: {error}")
    path = visualize(
        args.checkpoint, Path(args.out), args.images, args.mask_ratio, args.seed, args.image_folder,
        args.trust_checkpoint, args.bands,
    )  # fmt: skip
    print(f"reconstruction grid: {path}  (original | masked input | prediction | prediction pasted)")


if __name__ == "__main__":
    main()
