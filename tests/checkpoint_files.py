"""Checkpoint files for the export and checkpoint-safety tests: pretraining checkpoints as mmengine writes them,
and pickles that run code when unpickled in full."""

from pathlib import Path

import torch
from mmengine.config import Config

from hiermae.downstream.checkpoints import create_timm_model


def write_pretraining_checkpoint(
    path: Path, backbone: str, input_size: int, seed: int = 0, *, cfg_text: str | None = None, **meta: object
) -> dict[str, torch.Tensor]:
    """An mmengine-style MaskedPretrainer checkpoint: encoder under `encoder.model.`, a decoder, the config text
    (`cfg_text` replaces the text mmengine would write); returns the encoder's timm weights."""
    torch.manual_seed(seed)
    weights = create_timm_model(backbone, input_size, num_classes=0).state_dict()
    state_dict = {"encoder.model." + k: v for k, v in weights.items()}
    state_dict["decoder.head.weight"] = torch.zeros(3, 8)
    state_dict["encoder.mask_token"] = torch.zeros(1, 1, 8)
    if cfg_text is None:
        model = dict(type="MaskedPretrainer", backbone=backbone, input_size=input_size)
        cfg_text = Config(dict(model=model)).pretty_text
    torch.save({"state_dict": state_dict, "meta": {"cfg": cfg_text, "epoch": 0, **meta}}, path)
    return weights


class RunsCode:
    """Unpickling this object in full runs Python that writes `marker`: the shape of a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return exec, (f"open({self.marker!r}, 'w').write('code from a checkpoint ran')",)
