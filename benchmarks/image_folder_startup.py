"""Start-up time of `ImageFolder` on a large folder of tiny images: before (every file opened and verified, as the
dataset did until issue 14) and after (names listed only; then the second start, served from the file-list cache).

    python benchmarks/image_folder_startup.py [--files 100000] [--classes 100] [--folder /tmp/hiermae-startup]

The folder is generated once (one 8×8 PNG, written under every name) and reused. Times are wall-clock seconds of
building the dataset in this process. Folder entries stay in the page cache (the generation just listed them);
the "before" pass runs twice: with the files' contents cached, and after evicting them (it reads every file, so on
a cold disk or network storage it pays one read per file; listing names does not read files).
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from io import BytesIO
from pathlib import Path

from PIL import Image

from hiermae.data.datasets import ImageFolder
from hiermae.data.file_list import IMAGE_EXTENSIONS


def make_folder(folder: Path, files: int, classes: int) -> None:
    """`files` tiny PNGs spread over `classes` class folders; kept when a folder with that count exists."""
    marker = folder / f".generated-{files}-{classes}"
    if marker.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    buffer = BytesIO()
    Image.new("RGB", (8, 8), (120, 60, 30)).save(buffer, "PNG")
    payload = buffer.getvalue()
    for index in range(files):
        class_folder = folder / f"class{index % classes:05d}"
        if index < classes:
            class_folder.mkdir(parents=True)
        (class_folder / f"{index:08d}.png").write_bytes(payload)
    marker.touch()


def evict_file_contents(root: Path) -> None:
    """Drop these files' pages from the page cache (POSIX_FADV_DONTNEED), so the next read goes to the disk; folder
    entries stay cached. Touches only this folder, unlike dropping every cache of the machine."""
    for folder, _, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def verified_listing(root: Path) -> list[Path]:
    """The start-up the dataset had before: walk with pathlib, then open and verify every file."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    readable = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.verify()
            readable.append(path)
        except (OSError, SyntaxError, ValueError):
            pass
    return readable


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "hiermae-startup")
    parser.add_argument("--skip-before", action="store_true", help="time only the new start-up")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.files < 1 or args.classes < 1:
        parser.error("--files and --classes must be at least 1")
    generate_seconds, _ = timed(make_folder, args.folder, args.files, args.classes)
    print(f"folder {args.folder}: {args.files} files in {args.classes} classes (generated in {generate_seconds:.1f} s)")
    print("load average before timing: " + " ".join(f"{load:.2f}" for load in os.getloadavg()))
    figures = {"files": args.files, "classes": args.classes, "load_average": os.getloadavg()}
    if not args.skip_before:
        figures["before_verify_s"], readable = timed(verified_listing, args.folder)
        assert len(readable) == args.files
        evict_file_contents(args.folder)
        figures["before_verify_cold_s"], _ = timed(verified_listing, args.folder)
    with tempfile.TemporaryDirectory() as work:
        cache = str(Path(work) / "file_list.bin")
        figures["after_no_cache_s"], dataset = timed(ImageFolder, str(args.folder), image_size=32)
        figures["after_first_start_s"], _ = timed(ImageFolder, str(args.folder), image_size=32, file_list=cache)
        figures["after_cached_start_s"], cached = timed(ImageFolder, str(args.folder), image_size=32, file_list=cache)
        assert len(dataset) == len(cached) == args.files
    rows = [
        ("before: list + open and verify every file", figures.get("before_verify_s")),
        ("before, file contents not in the page cache", figures.get("before_verify_cold_s")),
        ("after: list names only (no cache)", figures["after_no_cache_s"]),
        ("after: first start, writing the cache", figures["after_first_start_s"]),
        ("after: restart / other ranks, from the cache", figures["after_cached_start_s"]),
    ]
    print("| start-up | seconds |\n|---|---|")
    for label, seconds in rows:
        if seconds is not None:
            print(f"| {label} | {seconds:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
