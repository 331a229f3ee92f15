"""The data preprocessor for masked pretraining: normalisation of C channels plus a resumable random horizontal
flip, the only flip pretraining applies (every pretraining config uses it; the datasets do not flip)."""

from collections.abc import Sequence

import torch
from mmengine.model import ImgDataPreprocessor
from mmengine.registry import MODELS

from hiermae.utils import batch_seeds


def plural(count: int, noun: str) -> str:
    """'1 channel', '4 values'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


@MODELS.register_module()
class MIMDataPreprocessor(ImgDataPreprocessor):
    """mmengine's image preprocessor for images of `channels` channels, flipping each training image with
    probability `flip_prob`.

    `mean` and `std` hold one value per channel (mmengine's own class takes only 1 or 3); a count that differs
    from `channels`, or a batch with another channel count, is a ValueError naming both. The flip is drawn from
    the sample's (seed, iteration, index) seed rather than a worker's RNG, so a resumed run sees the same images
    as an uninterrupted one.
    """

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        *args,  # noqa: ANN002
        channels: int = 3,
        flip_prob: float = 0.5,
        seed: int = 1,
        **kwargs,  # noqa: ANN003
    ) -> None:
        if (mean is None) != (std is None):
            raise ValueError("MIMDataPreprocessor: give both mean and std, or neither")
        if channels != 3 and (kwargs.get("bgr_to_rgb") or kwargs.get("rgb_to_bgr")):
            raise ValueError(f"MIMDataPreprocessor: bgr_to_rgb / rgb_to_bgr need 3 channels, not {channels}")
        for name, values in (("mean", mean), ("std", std)):
            if values is not None and len(values) != channels:
                raise ValueError(
                    f"MIMDataPreprocessor: images have {plural(channels, 'channel')} but {name} has "
                    f"{plural(len(values), 'value')}; give one per channel"
                )
        super().__init__(None, None, *args, **kwargs)
        self.channels = channels
        self.flip_prob = flip_prob
        self.seed = seed
        if mean is not None:
            self._enable_normalize = True
            self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1), False)
            self.register_buffer("std", torch.tensor(std).view(-1, 1, 1), False)

    def forward(self, data: dict, training: bool = False) -> dict:
        self.check_channels(data["inputs"])
        data = super().forward(data, training)
        seeds = batch_seeds(self.seed, data.get("data_samples")) if training and self.flip_prob > 0 else None
        if seeds is not None:
            draws = torch.stack([torch.rand((), generator=torch.Generator().manual_seed(int(s))) for s in seeds])
            flip = (draws < self.flip_prob).to(data["inputs"].device).view(-1, 1, 1, 1)
            data["inputs"] = torch.where(flip, data["inputs"].flip(-1), data["inputs"])
        return data

    def check_channels(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> None:
        """Raise ValueError unless every image (C×H×W, or a B×C×H×W batch) has `channels` channels."""
        images = [inputs] if isinstance(inputs, torch.Tensor) else inputs
        found = sorted({int(image.shape[-3]) for image in images if image.dim() >= 3})
        if found and found != [self.channels]:
            raise ValueError(
                f"MIMDataPreprocessor is set for images of {plural(self.channels, 'channel')} (its `channels`, the "
                f"model's in_chans) but the batch has {' and '.join(map(str, found))}; set the dataset's channels "
                "to match"
            )
