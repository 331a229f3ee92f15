"""Host-built plans: shapes fixed by (batch, size, visible count), a planned step that never waits for the host,
and a compiled encoder / pretraining step that compiles once whatever the masks."""

import pytest
import torch
from torch._dynamo.utils import counters

import hiermae
from benchmarks.sync_counter import counting
from hiermae.masking.plans import tensor_leaves, to_device
from hiermae.utils.registry import MASK_GENERATORS

SIZE, BATCH = 96, 4
FAMILIES = ["resnet18", "convnext_atto", "swin_tiny_patch4_window7_224", "vit_tiny_patch16_224",
            "mobilenetv3_large_100"]


def masks(kind: str, count: int, ratio: float = 0.75, batch: int = BATCH, size: int = SIZE) -> list[torch.Tensor]:
    generator = MASK_GENERATORS.build({"type": kind, "mask_ratio": ratio})
    return [generator(batch, (size // 32, size // 32), torch.arange(batch) + 100 * k) for k in range(count)]


def leaf_shapes(plan: object) -> list[tuple[tuple[int, ...], torch.dtype]]:
    return [(tuple(t.shape), t.dtype) for t in tensor_leaves(plan)]


@pytest.mark.parametrize("kind", ["random", "blockwise", "batch_shared"])
@pytest.mark.parametrize("backbone", FAMILIES)
def test_plan_shapes_do_not_depend_on_which_units_are_visible(backbone: str, kind: str) -> None:
    encoder = hiermae.build_encoder(backbone, input_size=SIZE)
    examples, others = masks(kind, 8), masks(kind, 6)[1:]
    planner = encoder.planner("cpu").calibrated(examples[:4])
    shapes = {tuple(leaf_shapes(planner(visible))) for visible in examples + others}
    assert len(shapes) == 1


@pytest.mark.parametrize("backbone", FAMILIES)
def test_a_planned_step_never_waits_for_the_host(backbone: str) -> None:
    """Counted as on a GPU (every op outside the planner stands for a device op): a step given its host-built plan
    has no data-dependent shape, scalar read or copy back; the plain call with the mask on the device has some."""
    torch.manual_seed(0)
    encoder = hiermae.build_encoder(backbone, input_size=SIZE).train()
    images = torch.randn(BATCH, 3, SIZE, SIZE)
    visible = masks("random", 1)[0]
    plan = to_device(encoder.planner("cpu")(visible), "cpu")
    with counting(on_gpu=False) as planned:
        sum(output.mean() for output in encoder(images, visible, plan)).backward()
    assert planned.sync_names() == []
    with counting(on_gpu=False) as plain:
        sum(output.mean() for output in encoder(images, visible)).backward()
    assert plain.total_syncs() >= 2  # reading the mask back to plan it (the counter does see syncs)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", FAMILIES)
def test_compiled_sparse_encoder_compiles_once_over_masks(backbone: str) -> None:
    """12 steps, each with another random mask: one graph, no graph break, no recompilation."""
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    encoder = hiermae.build_encoder(backbone, input_size=64).train()
    planner, compiled = encoder.planner("cpu"), torch.compile(encoder, dynamic=False)
    for visible in masks("random", 12, size=64, batch=2):
        outputs = compiled(torch.randn(2, 3, 64, 64), visible, planner(visible))
        sum(output.mean() for output in outputs).backward()
    assert counters["stats"]["unique_graphs"] == 1  # a recompilation would add a graph
    assert dict(counters["graph_break"]) == {}


@pytest.mark.slow
def test_compiled_pretraining_step_compiles_once_over_masks() -> None:
    """The whole step (mask and plan drawn on the host, encoder, decoder, target, loss, backward, AdamW), 10 steps
    with the masks of 10 iterations: the model computation compiles into one graph, once."""
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = hiermae.build_pretrainer("convnext_atto", input_size=64, compile=True,
                                     decoder={"type": "unet", "width": 32}).train()  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses = []
    for step in range(10):
        data_samples = {"index": [0, 1], "masked": model.mask_planner("cpu").draw(2, (2, 2), torch.tensor([step, 9]))}
        loss = model(torch.randn(2, 3, 64, 64), data_samples, mode="loss")["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    assert counters["stats"]["unique_graphs"] == 1 and dict(counters["graph_break"]) == {}
    assert all(torch.isfinite(torch.tensor(losses)))


def test_train_compile_option_compiles_the_pretrainer_and_other_models_through_mmengine(tmp_path) -> None:
    from hiermae.engine.training import build_config

    config = "configs/pretrain/hiermae_resnet18_64px_fashionmnist.py"
    pretraining = build_config(config, work_dir=str(tmp_path / "pretrain"), compile=True)
    assert pretraining.model.compile is True and not pretraining.get("compile")
    config = "configs/downstream/mask-rcnn_resnet18_fpn_shapes.py"
    detection = build_config(config, work_dir=str(tmp_path / "detection"), compile=True)
    assert detection.compile is True
