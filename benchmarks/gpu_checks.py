"""GPU correctness checks for a lent GPU session: sparse vs dense reference, and bf16 autocast.

    python benchmarks/gpu_checks.py [--backbones a,b,...] [--input 224] [--batch 4]

For each backbone: the sparse encoder and its dense reference on the same weights, max |difference| of every stage
output relative to the output scale (float32, eval mode), then one bf16-autocast forward+backward of the sparse
encoder with finite gradients. CNNs are compared under masks (the masked-dense reference is equivalent); Swin and
ViT with nothing masked (their SimMIM-style reference lets visible tokens attend to mask tokens, so masked
outputs differ by design). Masked Swin is checked against itself on the CPU instead (where the tests compare it
with a per-window brute force), per-sample and shared-mask paths, outputs and gradients: the GPU runs its own bias
path (one-hot matmuls) and SDPA kernels. Exits non-zero when a check fails.
"""

import argparse
import sys

import torch

from hiermae.backbones.build import build_encoder, encoder_family
from hiermae.backbones.site_encoder import SiteEncoder
from hiermae.backbones.swin import SwinEncoder
from hiermae.masking.masks import RandomMask
from hiermae.masking.plans import to_device
from hiermae.utils.registry import MASK_GENERATORS

DEFAULT = "resnet50,convnext_tiny,convnextv2_atto,swin_tiny_patch4_window7_224,vit_small_patch16_224"


def check(name: str, size: int, batch: int, ratio: float, device: str) -> bool:
    torch.manual_seed(0)
    dense = build_encoder(name, sparse=False, input_size=size).to(device).eval()
    sparse = build_encoder(name, sparse=True, input_size=size).to(device).eval()
    sparse.load_state_dict({k: v for k, v in dense.state_dict().items() if k != "mask_token"})
    images = torch.randn(batch, 3, size, size, device=device)
    grid = (size // 32, size // 32)
    if ratio:
        visible = RandomMask(ratio)(batch, grid, torch.arange(batch)).to(device)
    else:
        visible = torch.ones(batch, *grid, dtype=torch.bool, device=device)
    with torch.no_grad():
        errors = [
            float((s - d).abs().max() / d.abs().max().clamp(min=1e-6))
            for s, d in zip(sparse(images, visible), dense(images, visible))
        ]
    sparse.train()
    with torch.autocast(device, dtype=torch.bfloat16):
        outputs = sparse(images, visible)
    sum(o.float().mean() for o in outputs).backward()
    grads_finite = all(torch.isfinite(p.grad).all() for p in sparse.parameters() if p.grad is not None)
    ok = max(errors) <= 1e-4 and grads_finite
    print(f"{name}: mask {ratio}, worst relative error {max(errors):.2e} per stage "
          f"{[f'{e:.1e}' for e in errors]}; bf16 autocast fwd+bwd finite: {grads_finite} -> {'ok' if ok else 'FAIL'}",
          flush=True)  # fmt: skip
    return ok


def check_swin_against_cpu(name: str, size: int, batch: int, mask: str, device: str) -> bool:
    """Masked sparse Swin on the device against the same model on the CPU: outputs and parameter gradients."""
    torch.manual_seed(0)
    encoder = build_encoder(name, sparse=True, input_size=size).train()
    for module in encoder.modules():  # stochastic depth would draw differently on each device
        if hasattr(module, "drop_prob"):
            module.drop_prob = 0.0
    images = torch.randn(batch, 3, size, size)
    generator = MASK_GENERATORS.build({"type": mask, "mask_ratio": 0.75})
    visible = generator(batch, (size // 32, size // 32), torch.arange(batch))
    planner = encoder.planner(device).calibrated([visible])  # takes the shared path for batch-shared masks
    results = []
    for where in ("cpu", device):
        encoder.to(where).zero_grad(set_to_none=True)
        plan = to_device(planner(visible), where)
        outputs = encoder(images.to(where), visible.to(where), plan)
        sum((o * o).mean() for o in outputs).backward()
        # copies: on the CPU `.cpu()` returns the tensor itself, whose data `encoder.to(device)` then moves
        grads = [p.grad.detach().to("cpu", copy=True) for p in encoder.parameters() if p.grad is not None]
        results.append(([o.detach().to("cpu", copy=True) for o in outputs], grads))
    (cpu_out, cpu_grads), (gpu_out, gpu_grads) = results
    errors = [float((g - c).abs().max() / c.abs().max().clamp(min=1e-6))
              for g, c in zip(gpu_out + gpu_grads, cpu_out + cpu_grads, strict=True)]  # fmt: skip
    ok = max(errors) <= 1e-3
    print(f"{name}: {mask} mask 0.75, {device} vs cpu, worst relative error of outputs and gradients "
          f"{max(errors):.2e} -> {'ok' if ok else 'FAIL'}", flush=True)  # fmt: skip
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=DEFAULT)
    parser.add_argument("--input", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results = []
    for name in args.backbones.split(","):
        family = encoder_family(name)
        ratios = (0.6, 0.75, 0.9) if issubclass(family, SiteEncoder) else (0.0,)  # CNNs: equal under masks
        results += [check(name, args.input, args.batch, ratio, args.device) for ratio in ratios]
        if family is SwinEncoder:
            results += [check_swin_against_cpu(name, args.input, args.batch, mask, args.device)
                        for mask in ("random", "batch_shared")]  # fmt: skip
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
