"""Top-1 accuracy as an mmengine metric, for models whose `predict` returns one {'pred', 'label'} dict per sample."""

import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS


def predictions(logits: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """One {'pred', 'label'} dict per sample: the arg-max class and the true one."""
    return [{"pred": int(p), "label": int(y)} for p, y in zip(logits.argmax(1), labels, strict=True)]


@METRICS.register_module()
class TopOneAccuracy(BaseMetric):
    """Fraction of samples whose predicted class is the label."""

    default_prefix = ""

    def process(self, data_batch: dict, data_samples: list[dict]) -> None:
        self.results.extend(int(sample["pred"] == sample["label"]) for sample in data_samples)

    def compute_metrics(self, results: list[int]) -> dict[str, float]:
        return {"top1": sum(results) / max(len(results), 1)}
