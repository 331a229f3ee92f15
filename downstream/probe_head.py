"""LP-FT: fine-tuning that starts its head from a linear probe of the starting weights (Kumar et al. 2022,
"Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution").

A randomly initialised head sends large, arbitrary gradients into the backbone during the first epochs, which
distort pretrained features before the head has learnt to read them; a probe is fine-tuning with a frozen backbone,
so a protocol that starts from the probe contains it. Before training, `ProbeHeadHook` extracts the features the
classifier's final linear layer reads, of the un-augmented training images, as training computes them
(`as_in_training`); trains the comparison's probe on them (a BatchNorm without affine parameters, then a linear
layer: 100 epochs, AdamW lr 1e-2, batch 256, cosine decay); and folds the BatchNorm into the final linear layer.

Like layer-wise lr decay, it treats pretrained weights only. Random init keeps its random head: a probe of random
features fits the 1000 training images well enough to shrink the gradients its features learn from, and cost every
family 1-3 points on the validation split (docs/results/finetune-diagnosis-cpu.md).
"""

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import DATASETS, HOOKS
from torch import nn
from torch.utils.data import DataLoader, Dataset


@contextmanager
def as_in_training(network: nn.Module) -> Iterator[None]:
    """The network as training will run it, without its randomness or side effects: drop path and dropout off
    (eval mode), BatchNorm normalising by batch statistics (as in training) without updating its running ones."""
    was_training = network.training
    norms = [module for module in network.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    network.eval()
    for norm in norms:
        norm.train()
        norm.momentum = 0.0  # running = (1 - 0) × running + 0 × batch: unchanged
    try:
        yield
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        network.train(was_training)


@torch.no_grad()
def pre_logits_features(
    network: nn.Module, dataset: Dataset, preprocess: nn.Module, batch_size: int = 64, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N×C float32 features that a timm classifier's final linear layer reads in training, N labels), in shuffled
    batches of the fine-tuning batch size, as training draws them (BatchNorm normalises by them; a folder of images
    lists them class by class)."""
    features, labels = [], []
    order = torch.Generator().manual_seed(seed)
    with as_in_training(network):
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=order):
            inputs = preprocess(batch, training=False)["inputs"]
            pooled = network.forward_head(network.forward_features(inputs), pre_logits=True)
            features.append(pooled.float())
            labels.append(batch["data_samples"]["label"])
    return torch.cat(features), torch.cat(labels).to(features[0].device)


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 1e-2,
    seed: int = 0,
) -> nn.Sequential:
    """The comparison's probe (affine-free BatchNorm, then linear) trained on `features` with AdamW and per-step
    cosine decay to 0, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        width = features.shape[1]
        probe = nn.Sequential(nn.BatchNorm1d(width, affine=False), nn.Linear(width, num_classes))
    probe.to(features.device).train()
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * math.ceil(len(labels) / batch_size))
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator).to(features.device)
        for start in range(0, len(labels), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(probe(features[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return probe.eval()


@torch.no_grad()
def folded(probe: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the one linear layer equal to the probe in eval mode: its BatchNorm's running statistics
    folded into its linear layer."""
    norm, linear = probe
    weight = linear.weight * torch.rsqrt(norm.running_var + norm.eps)
    return weight, linear.bias - weight @ norm.running_mean


def start_head_from_probe(
    model: nn.Module, dataset: Dataset, batch_size: int, precision: Callable[[], AbstractContextManager], seed: int = 0
) -> float:
    """Set the final linear layer of `model.network` (an `ImageClassifier`'s timm model) to the folded probe of its
    features on `dataset`, read in batches of `batch_size` under `precision` (the training's autocast); returns the
    probe's top-1 on those images."""
    network, head = model.network, model.network.get_classifier()
    if not isinstance(head, nn.Linear):
        raise TypeError(f"LP-FT needs a linear classifier; {model.backbone} has {type(head).__name__}")
    with precision():
        features, labels = pre_logits_features(network, dataset, model.data_preprocessor, batch_size, seed)
    weight, bias = folded(fit_linear_probe(features, labels, head.out_features, seed=seed))
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
        return float((F.linear(features, weight, bias).argmax(1) == labels).float().mean())


@HOOKS.register_module()
class ProbeHeadHook(Hook):
    """Before training (not when resuming), starts a pretrained classifier's head from a linear probe of its weights
    on the training images without augmentation (the train loader's dataset with `augment=False`, its batch size,
    the training's autocast and seed)."""

    priority = "VERY_HIGH"

    def __init__(self, random_init: bool = False) -> None:
        self.random_init = random_init  # also start a random init's head from a probe (as the diagnosis measured)

    def before_train(self, runner) -> None:  # noqa: ANN001
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if runner.iter > 0 or not (model.pretrained or self.random_init):  # resumed: the checkpoint's head
            return
        dataset = DATASETS.build({**runner.cfg.train_dataloader.dataset, "augment": False})
        precision = partial(runner.optim_wrapper.optim_context, runner.model)  # the training's autocast
        top1 = start_head_from_probe(model, dataset, runner.train_dataloader.batch_size, precision, runner.seed)
        print_log(f"LP-FT: the head starts as a linear probe ({len(dataset)} images, its top-1 on them {top1:.4f})",
                  logger="current")  # fmt: skip
