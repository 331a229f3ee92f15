"""Can the data pipeline keep up with the sparse step? Images/s of one data-loader worker (JPEG decode +
random-resized crop to 224 + flip, one thread) for several decoders, then how many workers each sparse step figure
in BENCHMARKS.md needs.

    python benchmarks/loader.py [--images DIR | --make-images DIR] [--count 256] [--photo-size 500x375]
                                [--repeats 3] [--device cuda] [--loader-workers 2] [--json FILE]

Decode variants (all give a 3×224×224 uint8 tensor from a JPEG file):
- `dataset`: `ImageFolder.__getitem__` as training runs it: the crop box is drawn from the header size, PIL decodes
  the JPEG at the smallest DCT scale (1/2, 1/4, 1/8: `Image.draft`) that keeps the box at least 224 px, and only
  the box is resized;
- `pil-full`: PIL decodes the whole image, torchvision crops and resizes the tensor (the dataset before issue 14,
  and the usual torchvision pipeline);
- `torchvision`: `torchvision.io.decode_jpeg` (libjpeg-turbo) decodes the whole image on the CPU, then the tensor
  crop;
- with `--device cuda`: `torchvision.io.decode_jpeg(device='cuda')` (nvJPEG), a batch of 64 files decoded and
  cropped on the GPU; the CPU only reads the files. NVIDIA DALI (`nvidia-dali-cuda130` on PyPI) decodes on the GPU
  as well, inside its own pipeline, and is not measured here.

Step figures are parsed from every BENCHMARKS.md table with a "sparse ms" column (the encoder's forward + backward
at the batch its section names); the full step (decoder, loss, optimiser) is slower, so the worker counts are upper
bounds. Time it on a quiet machine: other processes on the same cores lower every figure.
"""

import argparse
import json
import math
import os
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

SIZE = 224
SCALE = (0.2, 1.0)
RATIO = (3 / 4, 4 / 3)
BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def photos() -> list[np.ndarray]:
    """scikit-image's offline colour photos (real JPEG statistics), else smooth random scenes with sensor noise."""
    try:
        import skimage.data

        names = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry", "hubble_deep_field")
        return [np.asarray(getattr(skimage.data, name)()) for name in names]
    except ImportError:
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:600, 0:800] / 100.0
        scenes = []
        for _ in range(6):
            a, b, c = rng.uniform(0.2, 3, 3)
            field = np.stack([np.sin(x * a + y), np.cos(y * b - x), np.sin((x + y) * c)], axis=2)
            scenes.append(((field + 1) * 120 + rng.normal(0, 8, field.shape)).clip(0, 255).astype(np.uint8))
        return scenes


def make_images(folder: Path, count: int, size: tuple[int, int] = (500, 375), seed: int = 0) -> None:
    """`count` JPEGs (quality 90), landscape or portrait `size` (ImageNet's typical 500×375 by default), cut
    from offline photos."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = photos()
    for index in range(count):
        source = Image.fromarray(sources[index % len(sources)])
        width, height = size if rng.random() < 0.7 else size[::-1]
        scale = max(width / source.width, height / source.height) * rng.uniform(1.0, 1.6)
        resized = source.resize((math.ceil(source.width * scale), math.ceil(source.height * scale)), Image.BICUBIC)
        left = int(rng.integers(0, resized.width - width + 1))
        top = int(rng.integers(0, resized.height - height + 1))
        resized.crop((left, top, left + width, top + height)).save(folder / f"{index:05d}.jpg", quality=90)


def crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """A random-resized-crop box (left, top, right, bottom), drawn as torchvision draws it."""
    top, left, box_height, box_width = v2.RandomResizedCrop.get_params(
        torch.empty(1, height, width), scale=list(SCALE), ratio=list(RATIO)
    )
    return left, top, left + box_width, top + box_height


def flip(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.flip(-1) if torch.rand(()) < 0.5 else tensor


def pil_full(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        tensor = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    left, top, right, bottom = crop_box(tensor.shape[2], tensor.shape[1])
    return flip(TF.resized_crop(tensor, top, left, bottom - top, right - left, [SIZE, SIZE], antialias=True))


def torchvision_decode(path: Path) -> torch.Tensor:
    tensor = torchvision.io.decode_jpeg(torchvision.io.read_file(str(path)), mode=torchvision.io.ImageReadMode.RGB)
    left, top, right, bottom = crop_box(tensor.shape[2], tensor.shape[1])
    resized = TF.resized_crop(tensor, top, left, bottom - top, right - left, [SIZE, SIZE], antialias=True)
    return flip(resized)


def per_worker_rate(function: Callable[[int], torch.Tensor], count: int, repeats: int) -> tuple[float, list[float]]:
    """Median images/s over `repeats` passes of `count` images, after one warm-up pass."""
    for index in range(min(count, 16)):
        function(index)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(count):
            out = function(index)
        rates.append(count / (time.perf_counter() - start))
        assert out.shape == (3, SIZE, SIZE) and out.dtype == torch.uint8
    return statistics.median(rates), rates


def gpu_decode_rate(paths: list[Path], repeats: int, batch: int = 64) -> float:
    """Images/s of nvJPEG batch decoding + crop on the GPU; the CPU reads the files (one thread)."""
    def one_pass() -> None:
        for first in range(0, len(paths), batch):
            data = [torchvision.io.read_file(str(path)) for path in paths[first : first + batch]]
            images = torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB, device="cuda")
            crops = []
            for image in images:
                left, top, right, bottom = crop_box(image.shape[2], image.shape[1])
                crops.append(TF.resized_crop(image, top, left, bottom - top, right - left, [SIZE, SIZE],
                                             antialias=True))  # fmt: skip
            torch.stack(crops)
        torch.cuda.synchronize()

    one_pass()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        one_pass()
        rates.append(len(paths) / (time.perf_counter() - start))
    return statistics.median(rates)


def loader_rate(folder: Path, workers: int, batches: int = 12, batch: int = 64) -> float:
    """Images/s of a real DataLoader over `ImageFolder` with `workers` workers (after the workers start)."""
    from mmengine.dataset import pseudo_collate

    from hiermae.data.datasets import ImageFolder

    dataset = ImageFolder(str(folder), image_size=SIZE)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=batches * batch * 2)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                                         collate_fn=pseudo_collate)  # fmt: skip
    stream = iter(loader)
    for _ in range(batches // 2):  # workers started and warm
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * batch / (time.perf_counter() - start)


def step_figures(path: Path = BENCHMARKS) -> list[dict]:
    """Every row of a BENCHMARKS.md table with a 'sparse ms' column: section, backbone, batch, sparse ms."""
    rows, section, batch, columns = [], "", None, None
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            section, batch, columns = line.lstrip("# ").strip(), None, None
            continue
        if not line.startswith("|"):
            columns = None
            found = re.findall(r"batch\**\s*(\d+)", line)
            batch = int(found[0]) if found else batch
            continue
        cells = [cell.strip().strip("*") for cell in line.strip().strip("|").split("|")]
        if "sparse ms" in cells:
            columns = cells
        elif columns and not set(cells[0]) <= set("-: ") and batch:
            try:
                sparse_ms = float(cells[columns.index("sparse ms")])
            except ValueError:
                continue
            rows.append({"section": section, "backbone": cells[0], "batch": batch, "sparse_ms": sparse_ms,
                         "images_per_s": batch / sparse_ms * 1000})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="a folder of JPEGs to decode (default: generate them)")
    parser.add_argument("--make-images", type=Path, help="generate the JPEGs into this folder and keep them")
    parser.add_argument("--count", type=int, default=256, help="images per pass")
    parser.add_argument("--photo-size", default="500x375", help="WxH of generated JPEGs (phone photos: 4000x3000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per variant (the median is reported)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda adds nvJPEG decoding")
    parser.add_argument("--loader-workers", type=int, default=0, help="also time a DataLoader with N workers")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    for name in ("count", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    try:
        size = tuple(int(side) for side in args.photo_size.lower().split("x"))
        assert len(size) == 2 and min(size) >= SIZE
    except (ValueError, AssertionError):
        parser.error(f"--photo-size must be WIDTHxHEIGHT, both at least {SIZE}, got {args.photo_size!r}")
    folder = args.images or args.make_images or Path(f"/tmp/hiermae-loader-jpegs-{size[0]}x{size[1]}")
    if args.images is None and len(list(folder.glob("*.jpg"))) < args.count:
        make_images(folder, args.count, size)
    paths = sorted(folder.glob("*.jpg"))[: args.count]
    if not paths:
        parser.error(f"no .jpg files in {folder}")
    torch.set_num_threads(1)  # one data-loader worker = one thread
    sizes = [os.path.getsize(path) for path in paths]
    print(f"{len(paths)} JPEGs from {folder}, mean {sum(sizes) / len(sizes) / 1024:.0f} KiB; torch "
          f"{torch.__version__}, torchvision {torchvision.__version__}, Pillow {Image.__version__}; load average "
          + " ".join(f"{load:.2f}" for load in os.getloadavg()))  # fmt: skip

    from hiermae.data.datasets import ImageFolder

    dataset = ImageFolder(str(folder), image_size=SIZE)
    order = {dataset.path(index): index for index in range(len(dataset))}
    dataset_indices = [order[path] for path in paths]
    variants = {
        "dataset": lambda i: dataset[dataset_indices[i]]["inputs"],
        "pil-full": lambda i: pil_full(paths[i]),
        "torchvision": lambda i: torchvision_decode(paths[i]),
    }
    figures = {"images": len(paths), "load_average": os.getloadavg(), "per_worker": {}}
    print("\n| decode + crop 224 (one worker, one thread) | images/s | ms/image |\n|---|---|---|")
    for name, function in variants.items():
        rate, rates = per_worker_rate(function, len(paths), args.repeats)
        figures["per_worker"][name] = {"images_per_s": rate, "passes": rates}
        print(f"| {name} | {rate:.0f} | {1000 / rate:.2f} |")
    if args.device == "cuda":
        rate = gpu_decode_rate(paths, args.repeats)
        figures["gpu_nvjpeg_images_per_s"] = rate
        print(f"| nvJPEG on {torch.cuda.get_device_name()} (batch 64, one CPU thread reading) | {rate:.0f} | "
              f"{1000 / rate:.2f} |")  # fmt: skip
    if args.loader_workers:
        rate = loader_rate(folder, args.loader_workers)
        figures["loader"] = {"workers": args.loader_workers, "images_per_s": rate}
        print(f"\nDataLoader over ImageFolder, {args.loader_workers} workers, batch 64: {rate:.0f} images/s")

    dataset_rate = figures["per_worker"]["dataset"]["images_per_s"]
    fastest = max(figures["per_worker"], key=lambda name: figures["per_worker"][name]["images_per_s"])
    fastest_rate = figures["per_worker"][fastest]["images_per_s"]
    figures["steps"] = step_figures()
    print(f"\n| sparse step (BENCHMARKS.md section) | batch | sparse ms | images/s | workers: dataset | workers: "
          f"{fastest} |\n|---|---|---|---|---|---|")  # fmt: skip
    for row in figures["steps"]:
        row["workers_dataset"] = math.ceil(row["images_per_s"] / dataset_rate)
        row["workers_fastest"] = math.ceil(row["images_per_s"] / fastest_rate)
        print(f"| {row['backbone']} ({row['section']}) | {row['batch']} | {row['sparse_ms']:g} | "
              f"{row['images_per_s']:.0f} | {row['workers_dataset']} | {row['workers_fastest']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
