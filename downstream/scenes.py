"""COCO-format scenes for detection and segmentation that run offline: objects pasted on backgrounds.

Two modes write the same layout (`images/<split>/`, `semantic/<split>/`, `annotations/instances_<split>.json`):
- `stamps`: photo cut-outs with alpha masks from Debian `tuxpaint-stamps-default`, grouped into a handful of
  categories by their folder, pasted on scikit-image photos and textures — objects a detector can really learn.
- `shapes`: filled circles, rectangles and triangles on noise; needs nothing installed, for fast tests.
Every image is drawn from its own seed (`seed`, split, index), so a scene does not depend on how many are made.
Later objects occlude earlier ones; instance masks, boxes and the label map describe what stays visible.
"""

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from hiermae.utils import require_transfer_stack

require_transfer_stack("pycocotools", "skimage", purpose="the detection scenes")

from pycocotools import mask as mask_utils  # noqa: E402

STAMP_ROOT = Path("/usr/share/tuxpaint/stamps")
STAMP_CATEGORIES = {
    "animal": "animals",
    "food": "food",
    "plant": "plants",
    "vehicle": "vehicles",
    "household": "household",
}
SHAPE_CATEGORIES = ("circle", "rectangle", "triangle")
BACKGROUND_NAMES = (
    "astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins", "grass", "gravel", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "retina", "rocket", "text",
)  # fmt: skip
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
MIN_VISIBLE_PIXELS = 16


class ScenesUnavailableError(RuntimeError):
    """The data a scene mode needs (stamps package, offline photos) is not on this machine."""


@dataclass(frozen=True)
class Cutout:
    """An RGB object with its binary mask, ready to paste."""

    rgb: np.ndarray  # h×w×3 uint8
    mask: np.ndarray  # h×w bool
    category: int  # 1-based category id


@dataclass
class Scene:
    """One composed image, its per-pixel category map and its visible instances."""

    image: np.ndarray  # S×S×3 uint8
    semantic: np.ndarray  # S×S uint8, 0 = background, k = category id k
    instances: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (category id, S×S bool mask)


def categories(mode: str) -> tuple[str, ...]:
    """Category names of a mode, in id order (ids start at 1; 0 is the background label)."""
    if mode == "stamps":
        return tuple(STAMP_CATEGORIES)
    if mode == "shapes":
        return SHAPE_CATEGORIES
    raise ValueError(f"unknown scene mode {mode!r}; valid modes: stamps, shapes")


@cache
def stamp_files() -> tuple[tuple[Path, ...], ...]:
    """The stamp PNGs with transparency, one tuple per category (sorted, so choices are reproducible)."""
    if not STAMP_ROOT.is_dir():
        raise ScenesUnavailableError(
            f"{STAMP_ROOT} is missing: apt-get install -y --no-install-recommends tuxpaint-stamps-default"
        )
    groups = []
    for folder in STAMP_CATEGORIES.values():
        files = []
        for path in sorted((STAMP_ROOT / folder).rglob("*.png")):
            with Image.open(path) as image:
                if image.mode in ("RGBA", "LA") or "transparency" in image.info:
                    files.append(path)
        if not files:
            raise ScenesUnavailableError(f"no transparent stamp under {STAMP_ROOT / folder}")
        groups.append(tuple(files))
    return tuple(groups)


@cache
def load_stamp(path: Path, max_side: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A stamp as (RGB, alpha ≥ 128 mask), cropped to its mask and shrunk to at most `max_side` px."""
    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    rgba = rgba.crop(rgba.getchannel("A").point(lambda a: 255 if a >= 128 else 0).getbbox())
    rgba.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    array = np.asarray(rgba)
    return array[..., :3].copy(), array[..., 3] >= 128


@cache
def background_photos() -> tuple[np.ndarray, ...]:
    """scikit-image's bundled photos and textures that load offline, as RGB uint8."""
    import skimage.data

    photos = []
    for name in BACKGROUND_NAMES:
        try:
            photo = np.asarray(getattr(skimage.data, name)())
        except Exception:  # noqa: BLE001 - a photo that needs a download is simply not used
            continue
        if photo.ndim == 2:
            photo = np.repeat(photo[..., None], 3, axis=2)
        photos.append(np.ascontiguousarray(photo[..., :3]).astype(np.uint8))
    if not photos:
        raise ScenesUnavailableError("no scikit-image background photo loads offline")
    return tuple(photos)


def resize(array: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize an H×W(×3) array to (height, width)."""
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.array(Image.fromarray(array).resize((size[1], size[0]), resample))


def stamp_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop of a random photo, resized to `size`."""
    photos = background_photos()
    photo = photos[rng.integers(len(photos))]
    side = int(rng.integers(min(photo.shape[:2]) // 2, min(photo.shape[:2]) + 1))
    top = int(rng.integers(photo.shape[0] - side + 1))
    left = int(rng.integers(photo.shape[1] - side + 1))
    return resize(photo[top : top + side, left : left + side], (size, size))


def noise_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour noise: a coarse random grid upsampled, plus fine grain."""
    coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    smooth = resize(coarse, (size, size)).astype(np.int16)
    grain = rng.integers(-25, 26, size=(size, size, 3))
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def stamp_cutout(rng: np.random.Generator, size: int) -> Cutout:
    """A random stamp of a random category, scaled to 25–60 % of the image side and maybe mirrored."""
    groups = stamp_files()
    category = int(rng.integers(len(groups)))
    rgb, mask = load_stamp(groups[category][rng.integers(len(groups[category]))])
    scale = rng.uniform(0.25, 0.6) * size / max(mask.shape)
    shape = (max(4, round(mask.shape[0] * scale)), max(4, round(mask.shape[1] * scale)))
    rgb, mask = resize(rgb, shape), resize(mask.astype(np.uint8) * 255, shape) >= 128
    if rng.random() < 0.5:
        rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    return Cutout(np.ascontiguousarray(rgb), np.ascontiguousarray(mask), category + 1)


def shape_cutout(rng: np.random.Generator, size: int) -> Cutout:
    """A filled circle, rectangle or triangle in one random colour, 20–50 % of the image side."""
    category = int(rng.integers(len(SHAPE_CATEGORIES)))
    height, width = (int(v) for v in rng.integers(max(6, size // 5), max(7, size // 2), size=2))
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    box = (0, 0, width - 1, height - 1)
    if SHAPE_CATEGORIES[category] == "circle":
        draw.ellipse(box, fill=255)
    elif SHAPE_CATEGORIES[category] == "rectangle":
        draw.rectangle(box, fill=255)
    else:
        draw.polygon([(width / 2, 0), (width - 1, height - 1), (0, height - 1)], fill=255)
    mask = np.asarray(canvas) >= 128
    colour = rng.integers(0, 256, size=3, dtype=np.uint8)
    rgb = np.broadcast_to(colour, (height, width, 3)).copy()
    return Cutout(rgb, mask, category + 1)


def compose_scene(rng: np.random.Generator, mode: str, size: int, max_objects: int) -> Scene:
    """Paste 1..max_objects cut-outs at random places; keep the instances that stay visible."""
    categories(mode)
    image = stamp_background(rng, size) if mode == "stamps" else noise_background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int32)
    pasted: list[int] = []
    for index in range(int(rng.integers(1, max_objects + 1))):
        cutout = stamp_cutout(rng, size) if mode == "stamps" else shape_cutout(rng, size)
        height, width = cutout.mask.shape
        top, left = int(rng.integers(size - height + 1)), int(rng.integers(size - width + 1))
        region = (slice(top, top + height), slice(left, left + width))
        image[region][cutout.mask] = cutout.rgb[cutout.mask]
        owner[region][cutout.mask] = index
        pasted.append(cutout.category)
    semantic = np.zeros((size, size), dtype=np.uint8)
    instances = []
    for index, category in enumerate(pasted):
        visible = owner == index
        semantic[visible] = category
        if visible.sum() >= MIN_VISIBLE_PIXELS:
            instances.append((category, visible))
    return Scene(image=image, semantic=semantic, instances=instances)


def coco_annotation(mask: np.ndarray, category: int, image_id: int, annotation_id: int) -> dict:
    """A COCO annotation with a compressed-RLE mask and the box [x, y, w, h] around the visible pixels."""
    rows, cols = np.nonzero(mask)
    x0, y0, x1, y1 = int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category,
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": int(mask.sum()),
        "segmentation": rle,
        "iscrowd": 0,
    }


def write_split(root: Path, split: str, count: int, *, mode: str, size: int, seed: int, max_objects: int) -> Path:
    """Write `count` scenes of one split; returns the annotation file. Image and annotation ids start at 1."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLIT_SEEDS)}")
    image_dir, semantic_dir = root / "images" / split, root / "semantic" / split
    for folder in (image_dir, semantic_dir, root / "annotations"):
        folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        rng = np.random.default_rng([seed, SPLIT_SEEDS[split], image_id])
        scene = compose_scene(rng, mode, size, max_objects)
        file_name = f"{image_id:06d}.png"
        Image.fromarray(scene.image).save(image_dir / file_name)
        Image.fromarray(scene.semantic).save(semantic_dir / file_name)
        images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
        for category, mask in scene.instances:
            annotations.append(coco_annotation(mask, category, image_id, len(annotations) + 1))
    names = categories(mode)
    coco = {
        "info": {"description": f"hiermae {mode} scenes, seed {seed}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": mode} for i, name in enumerate(names)],
    }
    annotation_file = root / "annotations" / f"instances_{split}.json"
    annotation_file.write_text(json.dumps(coco))
    return annotation_file


def generate_scenes(
    root: str | Path,
    *,
    mode: str = "stamps",
    counts: dict[str, int] | None = None,
    size: int = 128,
    seed: int = 0,
    max_objects: int = 4,
) -> dict[str, Path]:
    """Write a scene data set under `root` (default 200 train + 50 val images); returns split → annotation file."""
    categories(mode)
    if size < 32:
        raise ValueError(f"scene size must be at least 32 px, got {size}")
    root = Path(root)
    counts = counts or {"train": 200, "val": 50}
    return {
        split: write_split(root, split, count, mode=mode, size=size, seed=seed, max_objects=max_objects)
        for split, count in counts.items()
    }
