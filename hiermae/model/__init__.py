"""The pretraining model: encoder plus decoder, targets and loss, and its FLOP count."""

from hiermae.model import decoder, losses, targets  # noqa: F401  (register the decoders, losses and targets)
from hiermae.model.flops import PretrainingFlops, pretraining_flops
from hiermae.model.pretrainer import MaskedPretrainer, build_pretrainer

__all__ = ["MaskedPretrainer", "PretrainingFlops", "build_pretrainer", "pretraining_flops"]
