"""Property-based tests of the public API: `build_encoder(...)(images, visible)` and `build_pretrainer(...)(images)`
either run, with outputs of the promised shapes, or raise a named ValueError / TypeError, never anything else.

Images vary in rank (3-, 4-, 5-D), batch (0-2), channels (1, 3, 4), height and width (16-96 px, multiples of the
32-px unit or not), dtype (float32/64, bfloat16, float16, uint8, int64, bool) and values (normal, huge, NaN);
visible maps in shape, dtype and content (random, all or no unit visible). Small models (ResNet-18, ConvNeXt-atto,
sparse and dense reference, 64 px) keep each example at a few tens of milliseconds; `derandomize` makes CI runs
repeat the same examples.
"""

from functools import cache

import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import hiermae
from hiermae.backbones.base import MaskedEncoder

BACKBONES = ["resnet18", "convnext_atto"]
INPUT_SIZE = 64
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.uint8, torch.int64, torch.bool]
EXAMPLES = 100  # per test: a few seconds each on one core
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@cache
def encoder(backbone: str, sparse: bool) -> MaskedEncoder:
    torch.manual_seed(0)
    return hiermae.build_encoder(backbone, sparse=sparse, input_size=INPUT_SIZE).eval()


@cache
def pretrainer(backbone: str, sparse: bool) -> hiermae.MaskedPretrainer:
    torch.manual_seed(0)
    return hiermae.build_pretrainer(
        backbone, sparse=sparse, input_size=INPUT_SIZE, decoder={"type": "unet", "width": 16}
    ).eval()


@st.composite
def images(draw: st.DrawFn) -> torch.Tensor:
    """Mostly a well-formed float32 batch (of 32-px multiples), else any mix of rank, shape and dtype."""
    well_formed = draw(st.integers(0, 3)) > 0
    rank = 4 if well_formed else draw(st.sampled_from([4, 3, 5]))
    batch = draw(st.integers(1, 2) if well_formed else st.integers(0, 2))
    channels = 3 if well_formed else draw(st.sampled_from([3, 1, 4]))
    sides = [64, 64, 32, 96] if well_formed else [64, 32, 96, 48, 16]
    height, width = draw(st.sampled_from(sides)), draw(st.sampled_from(sides))
    shape = {4: (batch, channels, height, width), 3: (channels, height, width), 5: (batch, 1, channels, height, width)}
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    values = torch.randn(shape[rank], generator=generator) * draw(st.sampled_from([1.0, 1e4]))
    if draw(st.booleans()) and values.numel():
        values.view(-1)[0] = float("nan")
    dtype = torch.float32 if well_formed else draw(st.sampled_from(DTYPES))
    return values.to(dtype) if dtype.is_floating_point else (values * 50).nan_to_num().clamp(0, 255).to(dtype)


@st.composite
def visible_maps(draw: st.DrawFn, images: torch.Tensor) -> torch.Tensor:
    batch = images.shape[0] if images.dim() == 4 else 1
    grid = (batch, max(images.shape[-2] // 32, 1), max(images.shape[-1] // 32, 1))
    odd = st.sampled_from(["all", "none", "other shape", "float", "2-D"])
    kind = "random" if draw(st.integers(0, 3)) > 0 else draw(odd)
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    random = torch.rand(grid, generator=generator) < draw(st.sampled_from([0.25, 0.5, 0.9]))
    return {
        "random": random,
        "all": torch.ones(grid, dtype=torch.bool),
        "none": torch.zeros(grid, dtype=torch.bool),
        "other shape": torch.ones(grid[0], grid[1] + 1, grid[2], dtype=torch.bool),
        "float": random.float(),
        "2-D": random.reshape(grid[0] * grid[1], grid[2]),
    }[kind]


@PROPERTY_SETTINGS
@given(st.sampled_from(BACKBONES), st.booleans(), st.data())
def test_an_encoder_runs_or_names_the_problem(backbone: str, sparse: bool, data: st.DataObject) -> None:
    model = encoder(backbone, sparse)
    batch = data.draw(images(), label="images")
    visible = data.draw(visible_maps(batch), label="visible")
    try:
        with torch.no_grad():
            maps = model(batch, visible)
    except (ValueError, TypeError) as error:
        event(f"{type(error).__name__}: {str(error)[:40]}")
        return
    event("ran")
    height, width = batch.shape[-2:]
    expected = [(batch.shape[0], c, height // s, width // s) for c, s in zip(model.out_channels, model.out_strides)]
    assert [tuple(m.shape) for m in maps] == expected


@PROPERTY_SETTINGS
@given(st.sampled_from(BACKBONES), st.booleans(), st.booleans(), st.data())
def test_a_pretrainer_runs_or_names_the_problem(
    backbone: str, sparse: bool, explicit_mask: bool, data: st.DataObject
) -> None:
    model = pretrainer(backbone, sparse)
    batch = data.draw(images(), label="images")
    visible = data.draw(visible_maps(batch), label="visible") if explicit_mask else None
    try:
        with torch.no_grad():
            out = model(batch, visible=visible)
    except (ValueError, TypeError) as error:
        event(f"{type(error).__name__}: {str(error)[:40]}")
        return
    event("ran")
    assert out["loss"].dim() == 0 and out["pred"].shape == batch.shape
    assert out["visible"].shape == (batch.shape[0], INPUT_SIZE // 32, INPUT_SIZE // 32)
    if not batch.isnan().any() and batch.abs().max() < 1e3:
        assert torch.isfinite(out["loss"])
