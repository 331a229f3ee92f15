"""Cost of one backbone's masked-pretraining step: parameters, FLOPs, throughput and peak memory.

    python -m experiments.measure BACKBONE [--sparse 1] [--input-size 96] [--batch-size 32]
                                      [--mask-ratio 0.75] [--decoder JSON] [--json FILE]

Run as its own process (the comparison does), so the peak-memory figure starts from a fresh heap. Throughput is
images per second of the whole pretrainer's forward + backward (encoder, decoder, target, loss; no optimiser
step), the median of 7 timed steps after a warm-up, in wall-clock time and in this process's CPU time
(the second is steadier when other jobs share the cores; both are recorded with the load average and every
step's wall time, so a report can state the noise); peak memory is how far one step raises the resident set
(`hiermae.utils.resources`). FLOPs are per image, forward only (`hiermae.model.flops.pretraining_flops`).
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from hiermae.model import MaskedPretrainer, build_pretrainer, pretraining_flops
from hiermae.utils import step_peak_rss_bytes, write_json

DECODER = dict(type="unet", width=256)  # the shared recipe's decoder; family recipes pass theirs


def training_step(model: MaskedPretrainer, images: torch.Tensor) -> None:
    """Forward and backward of the whole pretrainer on a seeded mask."""
    visible = model.draw_mask(images, torch.arange(images.shape[0]))
    model(images, visible=visible, mode="loss")["loss"].backward()
    model.zero_grad(set_to_none=True)


def measure(
    backbone: str,
    sparse: bool,
    input_size: int,
    batch_size: int,
    mask_ratio: float,
    repeats: int = 7,
    decoder: dict | None = None,
) -> dict:
    """All figures for one backbone and mode, as a JSON-ready dict (`decoder`: a decoder config, default `DECODER`)."""
    torch.manual_seed(0)
    decoder = decoder or DECODER
    model = build_pretrainer(backbone, sparse=sparse, input_size=input_size, mask_ratio=mask_ratio, decoder=decoder)
    model.train()
    images = torch.randn(batch_size, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    training_step(model, images[:2])  # warm-up: allocator, library code, lazily built tables
    peak = step_peak_rss_bytes(lambda: training_step(model, images))
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        training_step(model, images)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    flops = pretraining_flops(backbone, input_size, mask_ratio, sparse=sparse, decoder=decoder)
    return {
        "backbone": backbone,
        "sparse": sparse,
        "input_size": input_size,
        "batch_size": batch_size,
        "mask_ratio": mask_ratio,
        "threads": torch.get_num_threads(),
        "images_per_second": batch_size / statistics.median(wall),
        "images_per_cpu_second": batch_size / statistics.median(cpu),
        "step_seconds": wall,
        "load_average": os.getloadavg()[0],
        "peak_mib": peak / 2**20,
        "encoder_parameters": flops.encoder_parameters,
        "decoder_parameters": flops.decoder_parameters,
        "dense_inference_flops": flops.dense_inference,
        "encoder_flops": flops.encoder,
        "decoder_flops": flops.decoder,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbone")
    parser.add_argument("--sparse", type=int, default=1, help="1: hiermae's sparse path, 0: the dense reference")
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--decoder", type=json.loads, help="decoder config as JSON (default: the shared UNet)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    figures = measure(
        args.backbone, bool(args.sparse), args.input_size, args.batch_size, args.mask_ratio, decoder=args.decoder
    )
    print(json.dumps(figures, indent=2))
    if args.json:
        write_json(Path(args.json), figures)


if __name__ == "__main__":
    main()
