"""The data preprocessor for masked pretraining: normalisation plus a resumable random horizontal flip, the only
flip pretraining applies (every pretraining config uses it; the datasets do not flip)."""

import torch
from mmengine.model import ImgDataPreprocessor
from mmengine.registry import MODELS

from hiermae.utils import batch_seeds


@MODELS.register_module()
class MIMDataPreprocessor(ImgDataPreprocessor):
    """mmengine's image preprocessor, flipping each training image with probability `flip_prob`.

    The flip is drawn from the sample's (seed, iteration, index) seed rather than a worker's RNG, so a resumed
    run sees the same images as an uninterrupted one.
    """

    def __init__(self, *args, flip_prob: float = 0.5, seed: int = 1, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.flip_prob = flip_prob
        self.seed = seed

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        seeds = batch_seeds(self.seed, data.get("data_samples")) if training and self.flip_prob > 0 else None
        if seeds is not None:
            draws = torch.stack([torch.rand((), generator=torch.Generator().manual_seed(int(s))) for s in seeds])
            flip = (draws < self.flip_prob).to(data["inputs"].device).view(-1, 1, 1, 1)
            data["inputs"] = torch.where(flip, data["inputs"].flip(-1), data["inputs"])
        return data
