"""Scene generator: COCO validity, consistency of boxes / masks / label maps, determinism, both modes."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hiermae.downstream.scenes import STAMP_ROOT, categories, generate_scenes


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("shapes")
    return root, generate_scenes(root, mode="shapes", counts={"train": 6, "val": 3}, size=64, seed=3)


def test_shapes_layout_and_ids(shapes: tuple[Path, dict[str, Path]]) -> None:
    root, files = shapes
    coco = load(files["train"])
    assert [image["id"] for image in coco["images"]] == list(range(1, 7))
    assert [a["id"] for a in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))
    assert [c["name"] for c in coco["categories"]] == list(categories("shapes"))
    assert {a["category_id"] for a in coco["annotations"]} <= {1, 2, 3}
    for image in coco["images"]:
        assert Image.open(root / "images" / "train" / image["file_name"]).size == (64, 64)
        assert Image.open(root / "semantic" / "train" / image["file_name"]).mode == "L"
    assert len(load(files["val"])["images"]) == 3


def test_boxes_masks_and_label_maps_agree(shapes: tuple[Path, dict[str, Path]]) -> None:
    root, files = shapes
    coco = load(files["train"])
    for annotation in coco["annotations"]:
        mask = mask_utils.decode(annotation["segmentation"]).astype(bool)
        rows, cols = np.nonzero(mask)
        x, y, w, h = annotation["bbox"]
        assert (x, y, x + w, y + h) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        assert annotation["area"] == mask.sum() >= 16
        file_name = coco["images"][annotation["image_id"] - 1]["file_name"]
        semantic = np.asarray(Image.open(root / "semantic" / "train" / file_name))
        assert (semantic[mask] == annotation["category_id"]).all()


def test_ground_truth_scores_perfect_ap_against_itself(shapes: tuple[Path, dict[str, Path]]) -> None:
    ground_truth = COCO(str(shapes[1]["train"]))
    detections = [dict(a, score=1.0) for a in ground_truth.dataset["annotations"]]
    for iou_type in ("bbox", "segm"):
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        assert evaluation.stats[0] == pytest.approx(1.0)


def test_scenes_are_deterministic_per_image(tmp_path: Path) -> None:
    first = generate_scenes(tmp_path / "a", mode="shapes", counts={"train": 2}, size=64, seed=5)
    second = generate_scenes(tmp_path / "b", mode="shapes", counts={"train": 4}, size=64, seed=5)
    other = generate_scenes(tmp_path / "c", mode="shapes", counts={"train": 2}, size=64, seed=6)
    for name in ("000001.png", "000002.png"):
        a, b, c = (
            (p / "images" / "train" / name).read_bytes() for p in (tmp_path / "a", tmp_path / "b", tmp_path / "c")
        )
        assert a == b != c
    assert (
        load(first["train"])["annotations"]
        == load(second["train"])["annotations"][: len(load(first["train"])["annotations"])]
    )
    assert load(first["train"]) != load(other["train"])


def test_unknown_mode_and_split_are_named_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid modes"):
        generate_scenes(tmp_path, mode="circles")
    with pytest.raises(ValueError, match="valid splits"):
        generate_scenes(tmp_path, mode="shapes", counts={"holdout": 1})


@pytest.mark.skipif(not STAMP_ROOT.is_dir(), reason="Debian package tuxpaint-stamps-default is not installed")
def test_stamp_scenes_paste_photo_cutouts(tmp_path: Path) -> None:
    files = generate_scenes(tmp_path, mode="stamps", counts={"val": 4}, size=96, seed=0, max_objects=3)
    coco = load(files["val"])
    assert [c["name"] for c in coco["categories"]] == ["animal", "food", "plant", "vehicle", "household"]
    assert len(coco["annotations"]) >= 4
    image = np.asarray(Image.open(tmp_path / "images" / "val" / "000001.png"))
    assert image.shape == (96, 96, 3) and image.std() > 10
    for annotation in coco["annotations"]:
        file_name = coco["images"][annotation["image_id"] - 1]["file_name"]
        semantic = np.asarray(Image.open(tmp_path / "semantic" / "val" / file_name))
        assert (semantic[mask_utils.decode(annotation["segmentation"]).astype(bool)] == annotation["category_id"]).all()


def test_make_scenes_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_scenes", Path(__file__).parents[1] / "tools" / "make_scenes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(tmp_path), "--mode", "shapes", "--train", "2", "--val", "1", "--size", "64"])
    assert "circle, rectangle, triangle" in capsys.readouterr().out
    assert len(load(tmp_path / "annotations" / "instances_val.json")["images"]) == 1
