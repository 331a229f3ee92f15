"""The small family-recipe comparison settings the comparison and ledger tests share."""

from experiments.comparison import Settings
from experiments.plan import Pretraining, family_recipe
from experiments.runs import Evaluation


def family_settings(**changes) -> Settings:
    """One ResNet-18 family-recipe comparison of two seeds and a tiny budget, with `changes` applied."""
    base = Pretraining("resnet18", mask_ratio=None, target=None, decoder=None, iters=4, batch_size=2, input_size=64,
                       recipe=family_recipe("resnet18"))  # fmt: skip
    values = dict(backbones=("resnet18",), seeds=(0, 1), base=base, evaluation=Evaluation(), minutes=0.5,
                  family_recipes=True)  # fmt: skip
    return Settings(**{**values, **changes})
