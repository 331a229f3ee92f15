import pytest
import torch

import hiermae

FAMILIES = ["vit_tiny_patch16_224", "resnet18", "convnext_atto", "swin_tiny_patch4_window7_224", "efficientnet_b0"]


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("backbone", FAMILIES)
def test_one_optimisation_step(backbone, sparse):
    torch.manual_seed(0)
    model = hiermae.build_pretrainer(backbone, sparse=sparse, input_size=64, decoder={"type": "unet", "width": 32})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(2, 3, 64, 64)
    out = model(images)
    assert out["pred"].shape == images.shape
    assert out["visible"].shape == (2, 2, 2) and out["visible"].sum() == 2
    out["loss"].backward()
    encoder_grads = [p.grad for p in model.encoder.model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in encoder_grads)
    optimizer.step()
    assert torch.isfinite(model(images)["loss"])


def test_same_visible_map_gives_same_loss_and_masked_pixels_do_not_matter():
    torch.manual_seed(0)
    model = hiermae.build_pretrainer("vit_tiny_patch16_224", input_size=64).eval()
    images = torch.randn(2, 3, 64, 64)
    visible = model.draw_mask(images, torch.tensor([1, 2]))
    first = model(images, visible=visible)
    keep = hiermae.MaskPyramid(visible, 32).at(1).unsqueeze(1)
    changed = torch.where(keep, images, torch.randn_like(images))
    features = model.encoder(images, visible)[0]
    assert torch.allclose(model.encoder(changed, visible)[0], features, atol=1e-5)
    assert torch.equal(model(images, visible=visible)["loss"], first["loss"])


def test_sparse_vit_equals_dense_vit_when_nothing_is_masked():
    torch.manual_seed(0)
    sparse = hiermae.build_encoder("vit_tiny_patch16_224", sparse=True, input_size=64).eval()
    dense = hiermae.build_encoder("vit_tiny_patch16_224", sparse=False, input_size=64).eval()
    missing, unexpected = dense.load_state_dict(sparse.state_dict(), strict=False)
    assert missing == ["mask_token"] and not unexpected
    images = torch.randn(2, 3, 64, 64)
    everything = torch.ones(2, 2, 2, dtype=torch.bool)
    reference = sparse.model.forward_features(images)[:, 1:].transpose(1, 2).reshape(2, -1, 4, 4)
    assert torch.allclose(sparse(images, everything)[0], reference, atol=1e-5)
    assert torch.allclose(dense(images, everything)[0], reference, atol=1e-5)


def test_timm_state_dict_loads_strictly_into_timm():
    import timm

    encoder = hiermae.build_encoder("vit_tiny_patch16_224", input_size=64)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64)
    reference.load_state_dict(encoder.timm_state_dict(), strict=True)


def test_named_errors():
    with pytest.raises(ValueError, match="unsupported backbone 'alexnet'") as error:
        hiermae.build_encoder("alexnet")
    assert all(f"{family}:" in str(error.value) for family in ("resnet", "convnext", "swin", "vit"))
    with pytest.raises(ValueError, match="not divisible by the mask unit 32"):
        hiermae.build_pretrainer("resnet18", input_size=100)
    with pytest.raises(ValueError, match="mask ratio"):
        hiermae.build_pretrainer("resnet18", mask_ratio=1.0, input_size=64)
    model = hiermae.build_pretrainer("resnet18", input_size=64)
    with pytest.raises(ValueError, match="not divisible by the mask unit 32"):
        model(torch.randn(1, 3, 64, 80))
    with pytest.raises(ValueError, match="unknown decoder 'mlp'"):
        hiermae.build_pretrainer("resnet18", input_size=64, decoder="mlp")


def test_hog_target_trains_without_pixel_prediction():
    model = hiermae.build_pretrainer("resnet18", input_size=64, target="hog", decoder={"type": "unet", "width": 32})
    out = model(torch.randn(2, 3, 64, 64))
    assert out["pred"] is None and torch.isfinite(out["loss"])


def test_runner_seeds_masks_by_iteration_and_index():
    from mmengine.logging import MessageHub

    model = hiermae.build_pretrainer("resnet18", input_size=64)
    samples = [{"index": 3}, {"index": 4}]
    hub = MessageHub.get_current_instance()
    hub.update_info("iter", 5)
    first = model.sample_seeds(samples)
    assert torch.equal(first, model.sample_seeds(samples))
    hub.update_info("iter", 6)
    assert not torch.equal(first, model.sample_seeds(samples))
    assert torch.equal(model.sample_seeds({"index": [3, 4], "label": [0, 1]}), model.sample_seeds(samples))
    assert model.sample_seeds(None) is None


def test_cpu_mixed_precision_wrapper_runs_the_forward_in_bfloat16():
    from hiermae.engine.amp import AutocastOptimWrapper

    model = hiermae.build_pretrainer("vit_tiny_patch16_224", input_size=64)
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    seen = []
    model.encoder.model.blocks[0].attn.qkv.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    with wrapper.optim_context(model):
        loss = model(torch.randn(2, 3, 64, 64))["loss"]
    assert seen == [torch.bfloat16] and torch.isfinite(loss)
    wrapper.update_params(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_preprocessor_flip_is_seeded_by_iteration_and_index():
    from mmengine.logging import MessageHub

    from hiermae.data.preprocess import MIMDataPreprocessor

    preprocessor = MIMDataPreprocessor(flip_prob=0.5, mean=[0.0] * 3, std=[1.0] * 3)
    images = [torch.arange(12.0).view(1, 2, 6).expand(3, 2, 6).clone() for _ in range(16)]
    batch = {"inputs": images, "data_samples": {"index": list(range(16))}}
    MessageHub.get_current_instance().update_info("iter", 3)
    first = preprocessor(batch, training=True)["inputs"]
    flipped = [bool(torch.equal(image, images[0].flip(-1))) for image in first]
    assert 0 < sum(flipped) < 16
    assert torch.equal(preprocessor(batch, training=True)["inputs"], first)
    assert torch.equal(preprocessor(batch, training=False)["inputs"], torch.stack(images))
