"""What a comparison runs: pretraining settings, and the plans (backbone comparison, ablations, sweeps) built from them.

A setting starts from a recipe config: each family's own (`configs/pretrain/*_96px_fashionmnist.py`, the
`FAMILY_RECIPES` below) or, with `recipe=None`, the shared pretraining bases. A setting names only what it changes
(mask ratio, decoder, target, lr scale, sparse path); everything else comes from the recipe, so every variant of a
plan differs from its baseline only in the fields it names.
"""

from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path

from mmengine.config import Config

from hiermae.backbones import encoder_family

ROOT = Path(__file__).resolve().parents[1]  # the source checkout: configs/ and tools/ are read from it
PRETRAIN_BASES = ("default_runtime.py", "fashion_mnist.py", "adamw_cosine.py")
DEFAULT_BACKBONES = ("resnet18", "convnext_atto", "swin_tiny_patch4_window7_224", "vit_tiny_patch16_224")
FAMILY_RECIPES = {  # each family's pretraining recipe; the config comments give the sources
    "resnet": "configs/pretrain/hiermae_resnet18_96px_fashionmnist.py",
    "convnext": "configs/pretrain/hiermae_convnext_atto_96px_fashionmnist.py",
    "swin": "configs/pretrain/hiermae_swin_tiny_96px_fashionmnist.py",
    "vit": "configs/pretrain/mae_vit_tiny_96px_fashionmnist.py",
    "efficient_cnn": "configs/pretrain/hiermae_mobilenetv3_large_100_96px_fashionmnist.py",
}
DECODERS = {  # the decoder variants an ablation may pick, as config dicts
    "unet": dict(type="unet", width=256),
    "transformer": dict(type="transformer", width=128, depth=2, num_heads=4),
    "linear": dict(type="linear"),
}
ABLATIONS = ("mask_ratio", "target", "sparse", "decoder")
# The per-family sweep tries each family's recipe and, one at a time, the values where the recipes' sources
# disagree: the mask ratio (SparK, ConvNeXt V2 and SimMIM mask 60 %, MAE 75 %) and the lr (base_lr is ours, 60×
# SparK's; 0.25× moves toward the published rates). The corner no source supports is left out.
SWEEPS = {"mask_ratio": (0.6, 0.75), "lr_scale": (0.25, 1.0)}
LOG_INTERVAL = 5  # iterations per logged point; the logged time is the mean over exactly these iterations


def base_files(recipe: str | None) -> list[str]:
    """The config files a setting starts from: its recipe, or the shared bases when `recipe` is None."""
    if recipe is None:
        return [str(ROOT / "configs/pretrain/_base_" / name) for name in PRETRAIN_BASES]
    return [str(ROOT / recipe)]


@cache
def recipe_config(recipe: str | None) -> Config:
    """The merged config a setting starts from."""
    return Config.fromstring(f"_base_ = {base_files(recipe)!r}\n", ".py")


def family_recipe(backbone: str) -> str:
    """The recipe config of `backbone`'s family; a ValueError naming the families that have one otherwise."""
    family = encoder_family(backbone).family
    if family not in FAMILY_RECIPES:
        raise ValueError(
            f"no comparison recipe for {backbone!r} (family {family}); families with one: {', '.join(FAMILY_RECIPES)}"
            " (or use --recipes shared)"
        )
    return FAMILY_RECIPES[family]


@dataclass(frozen=True)
class Pretraining:
    """One masked-pretraining setting; with a seed it is one run. The budget is `iters × batch_size` images.

    `recipe` is the config the run starts from (None: the shared bases); `mask_ratio`, `target` and `decoder` left
    None keep the recipe's; `lr_scale` multiplies the recipe's learning rate; `amp` trains under mixed precision
    (`tools/train.py --amp`: bf16 autocast on the CPU).
    """

    backbone: str
    sparse: bool = True
    mask_ratio: float | None = 0.75
    target: str | None = "norm_pixels"
    decoder: str | None = "unet"
    input_size: int = 96
    iters: int = 150
    batch_size: int = 32
    recipe: str | None = None
    lr_scale: float = 1.0
    amp: bool = False

    @property
    def name(self) -> str:
        """A folder-safe identifier that changes whenever any setting does."""
        mode = "sparse" if self.sparse else "dense"
        source = "shared" if self.recipe is None else Path(self.recipe).stem.split("_")[0] + "-recipe"
        parts = [self.backbone, mode, source]
        parts += [] if self.mask_ratio is None else [f"mask{round(self.mask_ratio * 100)}"]
        parts += [part for part in (self.target, self.decoder) if part is not None]
        parts += [] if self.lr_scale == 1.0 else [f"lrx{self.lr_scale:g}"]
        parts += ["amp"] if self.amp else []
        return "-".join([*parts, f"{self.input_size}px", f"{self.iters}x{self.batch_size}"])

    @property
    def images_seen(self) -> int:
        return self.iters * self.batch_size

    def warmup_iters(self) -> int:
        """Warm-up iterations: the recipe's `warmup_fraction` (10 % by default) of the run."""
        return max(1, round(recipe_config(self.recipe).get("warmup_fraction", 0.1) * self.iters))

    def learning_rate(self) -> float:
        """The optimiser lr the config sets (before mmengine's batch-size scaling, when the recipe enables it)."""
        return recipe_config(self.recipe).optim_wrapper.optimizer.lr * self.lr_scale

    def model_overrides(self, seed: int) -> str:
        parts = [f"backbone={self.backbone!r}", f"sparse={self.sparse}", f"input_size={self.input_size}"]
        parts.append(f"mask_seed={seed}")
        if self.mask_ratio is not None:
            parts.append(f"mask=dict(type='random', mask_ratio={self.mask_ratio})")
        if self.decoder is not None:
            if self.decoder not in DECODERS:
                raise ValueError(f"unknown decoder variant {self.decoder!r}; valid: {', '.join(DECODERS)}")
            parts.append(f"decoder=dict(_delete_=True, **{DECODERS[self.decoder]!r})")
        if self.target is not None:
            parts.append(f"target=dict(type={self.target!r})")
        return f"model = dict({', '.join(parts)})"

    def config_text(self, seed: int) -> str:
        """An mmengine config for this run: its recipe plus this setting, budget and seed."""
        bases = base_files(self.recipe)
        warmup = self.warmup_iters()
        checkpoint_every = max(1, self.iters // 3)
        return "\n".join(
            [
                f"# Generated by tools/compare.py: {self.name}, seed {seed}.",
                f"_base_ = {bases!r}",
                self.model_overrides(seed),
                f"train_dataloader = dict(batch_size={self.batch_size}, num_workers=0, persistent_workers=False,"
                f" dataset=dict(image_size={self.input_size}))",
                f"optim_wrapper = dict(optimizer=dict(lr={self.learning_rate()!r}))",
                f"train_cfg = dict(max_iters={self.iters})",
                "param_scheduler = ["
                f"dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end={warmup}), "
                f"dict(type='CosineAnnealingLR', by_epoch=False, begin={warmup}, end={self.iters}, eta_min=1e-5)]",
                f"default_hooks = dict(logger=dict(interval={LOG_INTERVAL}), checkpoint=dict("
                f"interval={checkpoint_every}, max_keep_ckpts=1))",
                f"log_processor = dict(by_epoch=False, window_size={LOG_INTERVAL})",
                f"custom_hooks = [dict(type='ReconstructionHook', interval={self.iters}, num_images=6),"
                " dict(type='TrainingSummaryHook', window=10), dict(type='NonFiniteLossHook')]",
                f"randomness = dict(seed={seed}, deterministic=False)",
                "",
            ]
        )

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Variant:
    """A labelled pretraining setting in a plan; `group` says which comparison or ablation axis it belongs to."""

    label: str
    group: str
    pretraining: Pretraining
    minutes: float | None = None  # this variant's wall-time budget, where it differs from the comparison's


def comparison_plan(backbones: list[str], base: Pretraining, family_recipes: bool = False) -> list[Variant]:
    """The same setting for every backbone (hiermae's sparse path; the dense reference where `base` asks); with
    `family_recipes`, each backbone starts from its family's recipe."""
    return [
        Variant(name, "backbone", replace(base, backbone=name, recipe=family_recipe(name) if family_recipes else None))
        for name in backbones
    ]


def ablation_plan(axes: list[str], base: Pretraining) -> list[Variant]:
    """One variant per value of each ablation axis, all on `base.backbone`; `base` itself appears once."""
    unknown = set(axes) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"unknown ablations {sorted(unknown)}; valid: {', '.join(ABLATIONS)}")
    variants = {base: Variant("baseline", "baseline", base)}
    values = {
        "mask_ratio": [("mask_ratio", ratio) for ratio in (0.4, 0.6, 0.75, 0.9)],
        "target": [("target", target) for target in ("pixels", "norm_pixels", "hog")],
        "sparse": [("sparse", True), ("sparse", False)],
        "decoder": [("decoder", decoder) for decoder in DECODERS],
    }
    for axis in axes:
        for field, value in values[axis]:
            setting = replace(base, **{field: value})
            if setting not in variants:
                variants[setting] = Variant(f"{field}={value}", axis, setting)
    return list(variants.values())


def sweep_plan(backbones: list[str], base: Pretraining) -> list[Variant]:
    """For every backbone, from its family's recipe: the recipe itself, then each other value of `SWEEPS` with the
    rest of the recipe kept (a one-at-a-time grid); the variant's group is its backbone."""
    variants = []
    for name in backbones:
        recipe = family_recipe(name)
        own = float(recipe_config(recipe).model.mask.mask_ratio)
        points = [(own, 1.0)] + [(r, 1.0) for r in SWEEPS["mask_ratio"] if r != own]
        points += [(own, s) for s in SWEEPS["lr_scale"] if s != 1.0]
        for ratio, scale in points:
            setting = replace(base, backbone=name, recipe=recipe, mask_ratio=ratio, lr_scale=scale)
            variants.append(Variant(f"mask_ratio={ratio}, lr×{scale:g}", name, setting))
    return variants


def budget_plan(backbone: str, base: Pretraining, minutes: tuple[float, ...], family_recipes: bool) -> list[Variant]:
    """Extra pretraining budgets of one backbone, for the curve of gain against pretraining minutes (group
    'budget'; the comparison's own budget is the curve's last point)."""
    (variant,) = comparison_plan([backbone], base, family_recipes)
    return [Variant(f"{backbone}, {m:g} min", "budget", variant.pretraining, minutes=m) for m in minutes]
