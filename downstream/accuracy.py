"""Top-1 accuracy as an mmengine metric, for models whose `predict` returns one {'pred', 'label'(, 'index')} dict
per sample."""

import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS


def predictions(logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None = None) -> list[dict]:
    """One {'pred', 'label'} dict per sample: the arg-max class and the true one, with the sample's dataset `index`
    (the image file read) when `indices` are given."""
    found = [{"pred": int(p), "label": int(y)} for p, y in zip(logits.argmax(1), labels, strict=True)]
    if indices is not None:
        for sample, index in zip(found, indices, strict=True):
            sample["index"] = int(index)
    return found


@METRICS.register_module()
class TopOneAccuracy(BaseMetric):
    """Fraction of the images whose predicted class is the label (`top1`), over `scored` images.

    Samples that name the same dataset `index` are one image, counted once: a split whose unreadable file was
    replaced by another of its files, or a distributed sampler's padding, does not weigh that image twice, and
    `scored` is the number of distinct images the accuracy is over. Samples without an index each count.
    """

    default_prefix = ""

    def process(self, data_batch: dict, data_samples: list[dict]) -> None:
        self.results.extend((sample.get("index"), int(sample["pred"] == sample["label"])) for sample in data_samples)

    def compute_metrics(self, results: list[tuple[int | None, int]]) -> dict[str, float]:
        by_image = {index if index is not None else ("sample", n): hit for n, (index, hit) in enumerate(results)}
        return {"top1": sum(by_image.values()) / max(len(by_image), 1), "scored": len(by_image)}
