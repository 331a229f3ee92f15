"""The image files under a folder: listed in one pass without opening any file, and optionally cached on disk.

Listing reads directory entries only (`os.scandir`), so a million files take seconds; files are checked when the
dataset reads them. Symlinked folders are followed, each real folder once, so link loops and repeated links end.
Names starting with a dot (`.DS_Store`, `._photo.jpg` resource forks, `.ipynb_checkpoints`) are left out.

The cache is one file: a JSON header line (root, extensions, the modification time of every folder listed), then
the relative paths separated by NUL bytes. It is reused while every folder's modification time is unchanged
(adding, removing or renaming a file changes its folder's), so restarts and other ranks skip the walk.
"""

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hiermae.utils import open_regular_file

CACHE_FORMAT = 1
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


@dataclass
class PackedNames:
    """Many strings in two numpy arrays: no per-item Python objects, so forked data-loader workers share the pages."""

    blob: np.ndarray  # uint8, the UTF-8 (surrogateescape) bytes of all names
    offsets: np.ndarray  # int64, len + 1 boundaries

    @classmethod
    def from_bytes(cls, names: list[bytes]) -> "PackedNames":
        lengths = np.fromiter((len(name) for name in names), dtype=np.int64, count=len(names))
        offsets = np.zeros(len(names) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.frombuffer(b"".join(names), dtype=np.uint8), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        return os.fsdecode(self.blob[self.offsets[index] : self.offsets[index + 1]].tobytes())

    def joined(self, separator: bytes) -> bytes:
        return separator.join(self.blob[a:b].tobytes() for a, b in zip(self.offsets[:-1], self.offsets[1:]))


@dataclass
class Listing:
    """Sorted relative paths of the images under `root`, their classes, the folder times they were listed at, and
    what was odd. A file's class is its top-level folder (label -1 for files directly in `root`)."""

    root: Path
    names: PackedNames
    labels: np.ndarray
    classes: tuple[str, ...]
    folder_times: dict[str, int]
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, why): unreadable folders, broken links
    seconds: float = 0.0
    source: str = "walked"


def top_folder_labels(names: list[bytes]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each name's class index (its first path component, sorted), -1 for names without a folder."""
    tops = [name.partition(b"/")[0] if b"/" in name else None for name in names]
    classes = sorted({top for top in tops if top is not None})
    index = {top: position for position, top in enumerate(classes)}
    labels = np.fromiter((index.get(top, -1) for top in tops), dtype=np.int64, count=len(names))
    return labels, tuple(os.fsdecode(top) for top in classes)


def walk(root: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> Listing:
    """List image files under `root` (any depth, symlinked folders followed once each) without opening them."""
    start = time.perf_counter()
    top = os.fspath(root)
    root_stat = os.stat(top)
    seen = {(root_stat.st_dev, root_stat.st_ino)}
    pending, names, folder_times, problems = [""], [], {}, []
    while pending:
        relative = pending.pop()
        folder = os.path.join(top, relative) if relative else top
        try:
            folder_times[relative] = os.stat(folder).st_mtime_ns
            entries = list(os.scandir(folder))
        except OSError as error:
            problems.append((folder, f"folder not listed: {type(error).__name__}: {error.strerror or error}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = f"{relative}/{entry.name}" if relative else entry.name
            try:
                if entry.is_dir():
                    target = entry.stat()
                    if (target.st_dev, target.st_ino) in seen:
                        problems.append((entry.path, "folder already listed (a link loop or a repeated link)"))
                    else:
                        seen.add((target.st_dev, target.st_ino))
                        pending.append(path)
                elif entry.name.lower().endswith(extensions):
                    if entry.is_file():
                        names.append(os.fsencode(path))
                    else:
                        problems.append((entry.path, "not a readable file (a broken link?)"))
            except OSError as error:
                problems.append((entry.path, f"{type(error).__name__}: {error.strerror or error}"))
    names.sort()
    labels, classes = top_folder_labels(names)
    seconds = time.perf_counter() - start
    return Listing(root, PackedNames.from_bytes(names), labels, classes, folder_times, problems, seconds)


def cache_header(root: Path, extensions: tuple[str, ...]) -> dict:
    return {"format": CACHE_FORMAT, "root": os.fspath(root.resolve()), "extensions": list(extensions)}


def write_cache(listing: Listing, cache: Path, extensions: tuple[str, ...]) -> None:
    """Write `listing` to `cache` through a temporary file and a rename, so readers never see half a file."""
    header = cache_header(listing.root, extensions)
    header.update(folders=listing.folder_times, count=len(listing.names), problems=listing.problems)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
    with open(partial, "wb") as handle:
        handle.write(json.dumps(header).encode() + b"\n")
        handle.write(listing.names.joined(b"\0"))
    os.replace(partial, cache)


def read_cache(root: Path, cache: Path, extensions: tuple[str, ...]) -> Listing | None:
    """The cached listing of `root`, or None when there is none, it is for another root, or a folder changed."""
    start = time.perf_counter()
    try:
        with open_regular_file(cache) as handle:  # a cache swapped for a FIFO must not block: it is rebuilt
            header = json.loads(handle.readline())
            body = handle.read()
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or any(header.get(k) != v for k, v in cache_header(root, extensions).items()):
        return None
    folder_times = header.get("folders", {})
    for relative, mtime in folder_times.items():
        try:
            if os.stat(os.path.join(root, relative) if relative else root).st_mtime_ns != mtime:
                return None
        except OSError:
            return None
    names = body.split(b"\0") if body else []
    if len(names) != header.get("count"):
        return None
    problems = [tuple(problem) for problem in header.get("problems", [])]
    labels, classes = top_folder_labels(names)
    seconds = time.perf_counter() - start
    packed = PackedNames.from_bytes(names)
    return Listing(root, packed, labels, classes, folder_times, problems, seconds, source=f"cache {cache}")


def list_images(root: Path, cache: Path | None = None, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> Listing:
    """The cached listing when it is still current, else a fresh walk (written to `cache` when one is given)."""
    if cache is not None:
        listing = read_cache(root, cache, extensions)
        if listing is not None:
            return listing
    listing = walk(root, extensions)
    if cache is not None:
        write_cache(listing, cache, extensions)
    return listing
