"""`MaskedPretrainer`: the one place that strings mask, encoder, decoder, target and loss together."""

import warnings
from collections import OrderedDict
from typing import Any

import torch
from mmengine.dist import all_reduce_dict
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from hiermae.backbones import build_encoder
from hiermae.data import MaskedBatch, MaskPlanner, MIMDataPreprocessor
from hiermae.masking import (
    MaskPyramid,
    check_divisible,
    check_in_chans,
    check_input_size,
    check_mask_leaves_both,
    to_device,
)
from hiermae.utils import DECODERS, LOSSES, MASK_GENERATORS, TARGETS, batch_seeds, build_part


@MODELS.register_module()
class MaskedPretrainer(BaseModel):
    """Masked image modeling: mask units, encode the visible ones, decode every unit, score the masked ones.

    Called as `model(images)` (B×C×H×W, C = `in_chans`) it returns `loss`, `pred` (B×C×H×W in the input's pixel
    space; None for non-invertible targets such as HOG) and `visible` (B×h×w bool). Under an mmengine runner each
    sample's mask is seeded from (`mask_seed`, iteration, sample index), so a resumed run draws the same masks again.

    Masks are drawn and the sparse encoder planned on the host (`MaskPlanner`): in the data-loader workers when
    the batch arrives with them (`data_samples['masked']`, from `hiermae.data.collate.MaskCollate`), else here; mask
    and plan reach the device in one non-blocking copy, and the step itself never waits for the host.

    Args:
        backbone: a timm model name (`hiermae.build_encoder` lists the families).
        sparse: compute at visible sites only (True), or run the masked-dense / mask-token reference (False).
        input_size: the square image size the model trains at (a multiple of the 32-px mask unit).
        in_chans: the image channels C (1 grey, 3 RGB, more for multispectral bands): the encoder's stem takes C,
            the target and the decoder's prediction have C channels (HOG: C histograms), and an
            `MIMDataPreprocessor` gets `channels=C` (its means and stds must then hold C values).
        mask, decoder, target, loss: configs of the parts (`type` names one in `hiermae.utils.registry`).
        mask_seed: base seed of the per-sample masks.
        compile: `torch.compile` the training step's model computation (encoder, decoder, target, loss; the
            backward follows): True for the default options ("reduce-overhead", i.e. CUDA graphs, on a GPU), or
            a dict of `torch.compile` options. Evaluation calls stay eager.
        data_preprocessor, init_cfg: as for any mmengine `BaseModel`.
    """

    def __init__(
        self,
        backbone: str,
        sparse: bool = True,
        input_size: int = 224,
        in_chans: int = 3,
        mask: dict[str, Any] | None = None,
        decoder: dict[str, Any] | None = None,
        target: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        mask_seed: int = 0,
        compile: bool | dict[str, Any] = False,
        data_preprocessor: dict[str, Any] | None = None,
        init_cfg: dict[str, Any] | None = None,
    ) -> None:
        check_in_chans(in_chans)
        super().__init__(data_preprocessor=preprocessor_with_channels(data_preprocessor, in_chans), init_cfg=init_cfg)
        self.encoder = build_encoder(backbone, sparse=sparse, input_size=input_size, in_chans=in_chans)
        self.unit = self.encoder.mask_unit
        check_divisible((input_size, input_size), self.unit)
        self.backbone = backbone
        self.input_size = input_size
        self.in_chans = in_chans
        self.mask_seed = mask_seed
        self.mask_generator = build_part(MASK_GENERATORS, mask or "random")
        self.compile_options = compile
        self._mask_planners: dict[str, MaskPlanner] = {}
        self._compiled_step: Any = None
        check_mask_leaves_both(self.mask_generator, input_size, self.unit)
        self.target = build_part(TARGETS, target or "norm_pixels", in_chans=in_chans)
        if self.target.in_chans != in_chans:
            raise ValueError(
                f"target {type(self.target).__name__} is set for in_chans={self.target.in_chans} but the model for "
                f"in_chans={in_chans}; leave the target's in_chans out (the model sets it)"
            )
        self.loss_fn = build_part(LOSSES, loss or "mse")
        default_decoder = "transformer" if len(self.encoder.out_strides) == 1 else "unet"
        self.decoder = build_part(
            DECODERS,
            decoder or default_decoder,
            in_channels=list(self.encoder.out_channels),
            in_strides=list(self.encoder.out_strides),
            out_channels=self.target.channels,
            out_stride=self.target.stride,
        )
        if sparse and not self.decoder.uses_context:
            warnings.warn(
                f"decoder {type(self.decoder).__name__} predicts each masked unit from its own site only; behind "
                "a sparse encoder that site holds just the mask token, so the encoder gets no gradient and keeps "
                "its initial weights. Use sparse=False (SimMIM) or a decoder with context (unet, transformer).",
                stacklevel=2,
            )

    def parse_losses(self, losses: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """mmengine's parsing, but the logged values are means over all processes, not rank 0's share of the batch.

        The loss to back-propagate stays this process's own; DDP averages the gradients.
        """
        loss, log_vars = super().parse_losses(losses)
        logged = OrderedDict((name, value.detach().clone()) for name, value in log_vars.items())
        all_reduce_dict(logged, op="mean")
        return loss, logged

    def sample_seeds(self, data_samples: dict | list[dict] | None) -> torch.Tensor | None:
        """Per-sample mask seeds from the runner's iteration and each sample's dataset index, if known."""
        return batch_seeds(self.mask_seed, data_samples)

    def draw_mask(self, images: torch.Tensor, seeds: torch.Tensor | None = None) -> torch.Tensor:
        """The B×h×w visible map for a batch of images, on their device."""
        check_divisible(images.shape[-2:], self.unit)
        grid = (images.shape[-2] // self.unit, images.shape[-1] // self.unit)
        return self.mask_generator(images.shape[0], grid, seeds).to(images.device)

    def mask_planner(self, device_type: str) -> MaskPlanner:
        """Draws masks and plans the encoder on the host for steps on `device_type`; data-loader workers hold one
        (`hiermae.engine.training.plan_in_workers`)."""
        if device_type not in self._mask_planners:
            planner = self.encoder.planner(device_type)
            self._mask_planners[device_type] = MaskPlanner(self.mask_generator, self.unit, planner)
        return self._mask_planners[device_type]

    def masked_batch(
        self, inputs: torch.Tensor, data_samples: dict | list[dict] | None, visible: torch.Tensor | None
    ) -> MaskedBatch:
        """The batch's mask and plan on the inputs' device: `visible` if given (planned here), else the one drawn
        in the data-loader worker, else one drawn here from the per-sample seeds."""
        planner = self.mask_planner(inputs.device.type)
        drawn = data_samples.get("masked") if isinstance(data_samples, dict) else None
        if visible is not None:
            batch = planner.plan(visible.cpu())
        elif isinstance(drawn, MaskedBatch):
            batch = drawn
        else:
            check_divisible(inputs.shape[-2:], self.unit)
            grid = (inputs.shape[-2] // self.unit, inputs.shape[-1] // self.unit)
            batch = planner.draw(inputs.shape[0], grid, self.sample_seeds(data_samples))
        return to_device(batch, inputs.device)

    def reconstruct(self, images: torch.Tensor, visible: torch.Tensor, plan: Any = None) -> dict[str, torch.Tensor]:
        """Encode the visible units, predict the target for every unit, and score the masked ones.

        `plan`: the sparse encoder's plan for `visible` on the images' device (built from `visible` if None).
        """
        features = self.encoder(images, visible, plan)
        pyramid = MaskPyramid(visible, self.unit)
        prediction = self.decoder(features, [pyramid.at(s) for s in self.encoder.out_strides])
        target = self.target(images, self.unit)
        return {"loss": self.loss_fn(prediction, target, visible), "prediction": prediction}

    def compiled_reconstruct(self, device_type: str) -> Any:
        """`reconstruct` under `torch.compile` with this model's options (built on first use)."""
        if self._compiled_step is None:
            options = dict(self.compile_options) if isinstance(self.compile_options, dict) else {}
            if device_type == "cuda":
                options.setdefault("mode", "reduce-overhead")  # CUDA graphs: one launch per captured graph
            options.setdefault("dynamic", False)  # plans have static shapes: keep the kernels specialised
            self._compiled_step = torch.compile(self.reconstruct, **options)
        return self._compiled_step

    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: dict | list[dict] | None = None,
        mode: str = "tensor",
        visible: torch.Tensor | None = None,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """mode 'loss': {'loss'} for the runner; 'tensor': {'loss', 'pred', 'visible'}; 'predict': per sample."""
        check_input_size(inputs, self.input_size, self.unit, self.encoder.weights_dtype(), self.in_chans)
        batch = self.masked_batch(inputs, data_samples, visible)
        if mode == "loss" and self.training and self.compile_options:
            if inputs.is_cuda:
                torch.compiler.cudagraph_mark_step_begin()
            result = self.compiled_reconstruct(inputs.device.type)(inputs, batch.visible, batch.plan)
        else:
            result = self.reconstruct(inputs, batch.visible, batch.plan)
        if mode == "loss":
            return {"loss": result["loss"]}
        pred = self.target.to_image(result["prediction"], inputs, self.unit)
        if mode == "tensor":
            return {"loss": result["loss"], "pred": pred, "visible": batch.visible}
        if mode == "predict":
            return [
                {"pred": None if pred is None else pred[i], "visible": batch.visible[i]}
                for i in range(inputs.shape[0])
            ]
        raise ValueError(f"unknown mode {mode!r}; use 'loss', 'tensor' or 'predict'")


def preprocessor_with_channels(cfg: dict[str, Any] | None, in_chans: int) -> dict[str, Any] | None:
    """An `MIMDataPreprocessor` config given the model's channel count (its `channels`; a different one set there is
    a ValueError); other preprocessor configs as they are."""
    if not isinstance(cfg, dict) or cfg.get("type") not in ("MIMDataPreprocessor", MIMDataPreprocessor):
        return cfg
    cfg = dict(cfg)
    if cfg.setdefault("channels", in_chans) != in_chans:
        raise ValueError(
            f"data_preprocessor.channels={cfg['channels']} differs from the model's in_chans={in_chans}; leave it "
            "out (the model sets it)"
        )
    return cfg


def build_pretrainer(
    backbone: str,
    *,
    sparse: bool = True,
    mask_ratio: float = 0.75,
    input_size: int = 224,
    in_chans: int = 3,
    **cfg: Any,
) -> MaskedPretrainer:
    """Build a `MaskedPretrainer` for a timm backbone name.

    Args:
        backbone, sparse, input_size, in_chans: as for `MaskedPretrainer`.
        mask_ratio: the fraction of 32-px units masked, used unless `cfg['mask']` sets its own.
        **cfg: any other `MaskedPretrainer` argument (mask, decoder, target, loss, mask_seed, compile, ...).
    """
    mask = dict(cfg.pop("mask", None) or {"type": "random"})
    mask.setdefault("mask_ratio", mask_ratio)
    return MaskedPretrainer(backbone, sparse=sparse, input_size=input_size, in_chans=in_chans, mask=mask, **cfg)
