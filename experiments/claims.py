"""What a comparison's numbers are judged against: the seeds' noise rule, the published claims an ablation tests,
and the goals a comparison must meet."""

import math
from dataclasses import dataclass

from experiments.results import Spread

FINETUNE_SANITY = 0.70  # random-init fine-tuning must reach this for the protocol to count as converged
FINETUNE_GAIN_GOAL = 3.0  # points of fine-tuning top-1 over random init, beyond noise, for every family


@dataclass(frozen=True)
class Claim:
    """A published direction an ablation can test: variant `better` should beat variant `worse`."""

    axis: str
    text: str
    source: str
    better: str
    worse: str


CLAIMS = (
    Claim("mask_ratio", "a high mask ratio (0.75) beats a low one (0.4)", "MAE, He et al. 2022, Fig. 5",
          "mask_ratio=0.75", "mask_ratio=0.4"),
    Claim("mask_ratio", "a mask ratio of 0.6 (SparK's choice) beats 0.4", "SparK, Tian et al. 2023",
          "mask_ratio=0.6", "mask_ratio=0.4"),
    Claim("target", "normalized pixels beat raw pixels", "MAE, He et al. 2022, Table 1d",
          "target=norm_pixels", "target=pixels"),
    Claim("target", "HOG is at least as good a target as raw pixels", "MaskFeat, Wei et al. 2022, target study",
          "target=hog", "target=pixels"),
    Claim("sparse", "sparse pretraining of a CNN beats the dense masked reference",
          "SparK, Tian et al. 2023, ablations", "sparse=True", "sparse=False"),
    Claim("decoder", "a hierarchical (UNet) decoder beats a single-scale linear head for a CNN",
          "SparK, Tian et al. 2023, ablations", "decoder=unet", "decoder=linear"),
)  # fmt: skip


def verdict(better: Spread, worse: Spread) -> str:
    """'reproduced' when the claimed winner leads by more than the seeds' combined spread, else why not.

    With fewer than two seeds on a side there is no spread to weigh the difference against: only the direction
    is reported.
    """
    if not better.values or not worse.values:
        return "not measured"
    difference = better.mean - worse.mean
    if min(len(better.values), len(worse.values)) < 2:
        direction = "same direction" if difference > 0 else "opposite direction" if difference < 0 else "tie"
        return f"{direction}, one seed only (no spread to judge)"
    noise = math.hypot(better.std, worse.std)
    if difference > noise:
        return "reproduced"
    if difference > 0:
        return "same direction, within seed noise"
    if difference == 0:
        return "not reproduced (tie)"
    if -difference > noise:
        return "not reproduced (opposite, beyond seed noise)"
    return "not reproduced (opposite direction, within seed noise)"
