"""WebDataset shards: pack an image folder into tar files, and stream them for pretraining on any number of ranks.

A shard folder holds `shard-NNNNNN.tar` files and `manifest.json` (classes, and each shard's file name, sample
count and first sample index), written last, so a folder with a manifest is complete. A sample is the original
image file's bytes (`<key>.<ext>`, not re-encoded), its class (`<key>.cls`, -1 without one) and its source path
(`<key>.json`); the key is the sample's global index, which `data_samples['index']` carries (it seeds the mask).
The manifest may also name the channels its images are read with (`channels`: 1 grey, 3 RGB, other TIFF bands;
3 when absent), which `ImageShards` reads them with.

`ImageShards` is an iterable dataset. Rank `r` of `R` with data-loader worker `w` of `W` is reader slot
`r * W + w` of `R * W`; with at least as many shards as slots each slot reads every (R·W)-th shard, otherwise every
slot reads all shards and keeps every (R·W)-th sample. Either way the slots read disjoint samples that together
cover the data set once per pass. Passes repeat without end by default (iteration-based training never restarts
the loader), each with a new shard order and a shuffle buffer across shard boundaries; a resumed run starts a new
pass rather than continuing the interrupted one.
"""

import bisect
import io
import json
import logging
import multiprocessing
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import webdataset
from mmengine.dist import get_rank, get_world_size
from mmengine.logging import print_log
from mmengine.registry import DATASETS
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_expander

from hiermae.data.file_list import list_images
from hiermae.data.images import ChannelCountError, CropReader
from hiermae.utils import open_regular_file, read_regular_bytes

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm", "pbm")


@dataclass(frozen=True)
class Shard:
    name: str
    count: int
    first_index: int


def pack_folder(
    root: Path, out: Path, samples_per_shard: int = 1000, seed: int | None = 0, channels: int | None = None
) -> list[Shard]:
    """Pack the images under `root` (as `ImageFolder` lists them) into shards in `out`, in an order shuffled by
    `seed` (None keeps the sorted order), recording `channels` (None: the default 3) in the manifest. Files are
    stored as they are; a bad one, or one of another band count, is found when read."""
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be at least 1, got {samples_per_shard}")
    listing = list_images(Path(root))
    if not len(listing.names):
        raise ValueError(f"{root} has no image files to pack")
    order = list(range(len(listing.names)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until the new manifest is written
    shards = []
    for first in range(0, len(order), samples_per_shard):
        shard = Shard(f"shard-{len(shards):06d}.tar", min(samples_per_shard, len(order) - first), first)
        partial = out / f"{shard.name}.partial"
        with webdataset.TarWriter(str(partial), encoder=False, mtime=0) as writer:
            for index in range(first, first + shard.count):
                position = order[index]
                name = listing.names[position]
                suffix = name.rsplit(".", 1)[-1].lower()
                writer.write({
                    "__key__": f"{index:09d}",
                    suffix: read_regular_bytes(Path(root) / name),  # a FIFO raises, never blocks
                    "cls": str(int(listing.labels[position])).encode(),
                    "json": json.dumps({"path": name}).encode(),
                })  # fmt: skip
        os.replace(partial, out / shard.name)
        shards.append(shard)
    manifest = {"format": MANIFEST_FORMAT, "source": str(root), "classes": list(listing.classes),
                "shards": [vars(shard) for shard in shards]}  # fmt: skip
    if channels is not None:
        manifest["channels"] = channels
    (out / f"{MANIFEST}.partial").write_text(json.dumps(manifest, indent=1))
    os.replace(out / f"{MANIFEST}.partial", out / MANIFEST)
    return shards


def read_manifest(root: Path) -> tuple[list[Shard], tuple[str, ...], int]:
    """The shards, classes and channels of a shard folder; a named error when the folder is not a complete one."""
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a shard folder: {MANIFEST} is missing (tools/make_shards.py writes it)")
    try:
        manifest = json.loads(read_regular_bytes(path))
        shards = [Shard(str(s["name"]), int(s["count"]), int(s["first_index"])) for s in manifest["shards"]]
        classes = tuple(manifest["classes"])
        channels = int(manifest.get("channels", 3))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a valid shard manifest: {type(error).__name__}: {error}") from error
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} has format {manifest.get('format')!r}; this version reads {MANIFEST_FORMAT}")
    missing = [shard.name for shard in shards if not (root / shard.name).is_file()]
    if missing or not shards:
        raise FileNotFoundError(f"shard folder {root}: {len(missing)} shards missing ({', '.join(missing[:5])})")
    return shards, classes, channels


def reader_slot() -> tuple[int, int]:
    """(this reader's slot, number of slots) over ranks × data-loader workers."""
    worker = get_worker_info()
    worker_id, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
    return get_rank() * workers + worker_id, get_world_size() * workers


def shard_samples(path: Path) -> Iterator[dict]:
    """The samples of one tar shard, as webdataset groups its files by key (`NotARegularFileError` for a FIFO)."""
    with open_regular_file(path) as stream:
        yield from group_by_keys(tar_file_expander([{"url": str(path), "stream": stream}]))


@DATASETS.register_module()
class ImageShards(IterableDataset):
    """Stream a shard folder made by `tools/make_shards.py`; items are shaped like `ImageFolder`'s.

    A sample that cannot be decoded is skipped, counted across workers and named in the log; a damaged shard is
    read up to the damage, named, and the pass goes on with the next shard. Images are not flipped here: the
    pretraining configs flip in `MIMDataPreprocessor`, from each sample's seed.

    Args:
        root: the shard folder (`tools/make_shards.py --out`).
        image_size, scale: as for `ImageFolder`.
        shuffle_buffer: samples mixed across shards before reading (0: none).
        seed: base of the shard order and the shuffling.
        repeat: pass after pass without end (pretraining), or one pass.
        channels: channels of each image; None reads the manifest's (3 when it names none), another count fails.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 224,
        scale: tuple[float, float] = (0.2, 1.0),
        shuffle_buffer: int = 1000,
        seed: int = 0,
        repeat: bool = True,
        channels: int | None = None,
    ) -> None:
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be 0 (no shuffling) or more, got {shuffle_buffer}")
        self.root = Path(root)
        shards, classes, stored_channels = read_manifest(self.root)
        if channels is not None and channels != stored_channels:
            raise ValueError(
                f"shard folder {root} holds {stored_channels}-channel images, not channels={channels} "
                f"(tools/make_shards.py --channels sets it)"
            )
        self.channels = stored_channels
        self.shards = sorted(shards, key=lambda shard: shard.first_index)
        self.metainfo = {"classes": classes}
        self.num_samples = sum(shard.count for shard in self.shards)
        self.shuffle_buffer, self.seed, self.repeat = shuffle_buffer, seed, repeat
        self.read = CropReader(image_size, tuple(scale), flip=False, channels=self.channels)
        self._skipped_count = multiprocessing.Value("q", 0)
        print_log(f"ImageShards {root}: {self.num_samples} images in {len(self.shards)} shards", "current")

    def __len__(self) -> int:
        """Samples per pass for one rank; a repeating stream has no end and says so (sys.maxsize), so that neither
        mmengine (which asks for the loader's length) nor the loader (which warns past it) stops or complains."""
        return sys.maxsize if self.repeat else -(-self.num_samples // get_world_size())

    @property
    def skipped_count(self) -> int:
        """Samples skipped as undecodable so far, by this process and every data-loader worker."""
        return self._skipped_count.value

    def _skip(self, where: str, error: Exception) -> None:
        with self._skipped_count.get_lock():
            self._skipped_count.value += 1
            count = self._skipped_count.value
        print_log(f"skipped {where} ({type(error).__name__}: {error}); {count} skipped so far", "current",
                  logging.WARNING)  # fmt: skip

    def _slot_samples(self, slot: int, slots: int, rng: random.Random) -> Iterator[tuple[int, dict]]:
        """One pass over this slot's share: (global index, raw sample), shards in a fresh order."""
        by_shard = len(self.shards) >= slots
        shards = self.shards[slot::slots] if by_shard else list(self.shards)
        for shard in rng.sample(shards, len(shards)):
            index = shard.first_index - 1
            try:
                for index, raw in enumerate(shard_samples(self.root / shard.name), start=shard.first_index):
                    if by_shard or index % slots == slot:
                        yield index, raw
            except Exception as error:  # a damaged tar: keep what was read, go on with the next shard
                self._skip(f"the rest of shard {self.root / shard.name} after sample {index}", error)

    def _shuffled(self, samples: Iterator[tuple[int, dict]], rng: random.Random) -> Iterator[tuple[int, dict]]:
        if not self.shuffle_buffer:
            yield from samples
            return
        buffer: list[tuple[int, dict]] = []
        for sample in samples:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            position = rng.randrange(len(buffer))
            buffer[position], sample = sample, buffer[position]
            yield sample
        rng.shuffle(buffer)
        yield from buffer

    def _decode(self, index: int, raw: dict) -> dict | None:
        suffix = next((s for s in IMAGE_SUFFIXES if s in raw), None)
        try:
            if suffix is None:
                raise ValueError(f"no image file in the sample (files: {sorted(k for k in raw if k[:2] != '__')})")
            inputs = self.read(io.BytesIO(raw[suffix]))
            label = int(raw.get("cls", b"-1"))
        except ChannelCountError as error:  # the channels do not fit the data: a setting to fix, not a sample to skip
            raise ChannelCountError(f"sample {index} ({raw.get('__url__')}): {error}") from error
        except Exception as error:  # any per-sample failure must not stop a run
            self._skip(f"undecodable sample {index} ({raw.get('__url__')})", error)
            return None
        return {"inputs": inputs, "data_samples": {"index": index, "label": label}}

    def _read_one(self, index: int) -> dict | None:
        shard = self.shards[bisect.bisect_right([s.first_index for s in self.shards], index) - 1]
        try:
            for position, raw in enumerate(shard_samples(self.root / shard.name), start=shard.first_index):
                if position == index:
                    return self._decode(index, raw)
        except Exception as error:  # a damaged tar
            self._skip(f"sample {index} in damaged shard {self.root / shard.name}", error)
        return None

    def __getitem__(self, index: int) -> dict:
        """Random access by global index, reading its shard up to the sample: for inspection (the reconstruction
        PNGs take the first few), not for training, which streams. An unreadable sample gives the next one."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} is out of range for {self.num_samples} samples in {self.root}")
        for offset in range(self.num_samples):
            item = self._read_one((index + offset) % self.num_samples)
            if item is not None:
                return item
        raise RuntimeError(f"no sample of {self.root} could be read")

    def __iter__(self) -> Iterator[dict]:
        slot, slots = reader_slot()
        for epoch in range(2**62 if self.repeat else 1):
            rng = random.Random(f"{self.seed}-{epoch}-{slot}")
            decoded = 0
            for index, raw in self._shuffled(self._slot_samples(slot, slots, rng), rng):
                item = self._decode(index, raw)
                if item is not None:
                    decoded += 1
                    yield item
            if not decoded:
                raise RuntimeError(f"reader {slot} of {slots} decoded no sample of {self.root} in a whole pass")
