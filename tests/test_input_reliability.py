"""Issue 20, inputs and the command line: what users type and the files they point at never hang a read, never
change silently, and fail as one line that names the problem."""

import importlib.util
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hiermae.data.datasets import ImageFolder
from hiermae.data.file_list import list_images
from hiermae.data.sampling import InfiniteIndexSampler, IterationBatchSampler
from hiermae.data.shards import ImageShards, pack_folder
from hiermae.downstream.accuracy import TopOneAccuracy
from hiermae.downstream.labelled_data import LabelledImageFolder
from hiermae.engine.config_check import ConfigValueError
from hiermae.engine.training import build_config
from hiermae.utils.regular_files import NotARegularFileError, open_regular_file, read_regular_bytes

from small_training import CONFIG, ROOT

READ_TIMEOUT_S = 20
EVALUATE_QUICKLY = ["--backbone", "resnet18", "--input-size", "32", "--protocol", "knn", "--train-limit", "8",
                    "--test-limit", "8"]  # fmt: skip  (what the code before the fix ran before failing)


def tool(name: str):  # noqa: ANN201 - the module of tools/<name>.py
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_folder(root: Path, classes: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def finishes(action, fifo: Path):  # noqa: ANN001, ANN201
    """Run `action()` in a thread; if it is still blocked after READ_TIMEOUT_S, release it by opening the FIFO's
    writing end (so the test ends) and fail. Returns what `action` returned, or raises what it raised."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(READ_TIMEOUT_S)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # a reader blocked in open() returns, then sees EOF
        thread.join(READ_TIMEOUT_S)
        pytest.fail(f"the read of FIFO {fifo} blocked for {READ_TIMEOUT_S} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# --- item 3: --cfg-options values keep their spaces; malformed options are named -----------------------------------

SPACED = "train_dataloader.dataset.root=/data/my photos"


@pytest.mark.parametrize("name", ["train", "demo"])
def test_a_space_in_a_cfg_options_value_is_kept(name):
    options = tool(name).parse_args(
        [str(CONFIG), "--cfg-options", SPACED, "model.x=[1, 2]", "a.b=(1, 'p q')", "c='/x,y'", "d=1,2", "e=None"]
    ).cfg_options
    assert options == {
        "train_dataloader.dataset.root": "/data/my photos", "model.x": [1, 2], "a.b": (1, "p q"), "c": "/x,y",
        "d": [1, 2], "e": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("foo", "'foo' is not KEY=VALUE"),
        ("=3", "'=3' is not KEY=VALUE"),
        ("a..b=1", "'a..b=1' is not KEY=VALUE"),
        ("model.x=[1, 2", "model.x: ']' is missing in '[1, 2'; quote the value"),
        ("model.x=(1))", "model.x: ')' at position 4 of '(1))' closes nothing"),
    ],
)
def test_a_malformed_cfg_option_is_named(capsys, option, message):
    with pytest.raises(SystemExit) as stopped:
        tool("train").parse_args([str(CONFIG), "--cfg-options", option])
    assert stopped.value.code == 2
    assert f"argument --cfg-options: {message}" in capsys.readouterr().err


def test_a_comma_that_turns_a_text_setting_into_a_list_is_refused(tmp_path):
    write_folder(tmp_path / "a,b", {"x": 1})
    config = ROOT / "configs/pretrain/_base_/image_folder_224px.py"
    with pytest.raises(ConfigValueError, match=r"train_dataloader.dataset.root: the config holds text .* reads as "
                                               r"the list \['/.*/a', 'b'\] .* quote it"):  # fmt: skip
        build_config(str(config), work_dir=str(tmp_path / "w"),
                     cfg_options={"train_dataloader.dataset.root": [f"{tmp_path}/a", "b"]})  # fmt: skip
    cfg = build_config(str(config), work_dir=str(tmp_path / "w"),
                       cfg_options={"train_dataloader.dataset.root": f"{tmp_path}/a,b"})  # fmt: skip
    assert cfg.train_dataloader.dataset.root == f"{tmp_path}/a,b"


# --- item 4: an unreadable image is replaced from its own split; the report counts what each split used -----------


def test_an_unreadable_validation_image_is_replaced_from_the_validation_split(tmp_path):
    write_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    val = LabelledImageFolder(str(tmp_path / "pets"), image_size=32, part="val", val_fraction=0.4)
    train = LabelledImageFolder(str(tmp_path / "pets"), image_size=32, part="train", val_fraction=0.4)
    broken = next(position for position in val.indices if position + 1 in train.indices)  # its successor: training
    (tmp_path / "pets" / val.folder.names[broken]).write_bytes(b"not an image")
    read = [val[i]["data_samples"]["index"] for i in range(len(val))]
    assert set(read) <= set(val.indices) - {broken}, f"validation read training images {set(read) - set(val.indices)}"
    assert val.skipped_count == 1 and train.skipped_count == 0


def test_top_one_counts_each_image_once():
    metric = TopOneAccuracy()
    metric.process({}, [{"pred": 1, "label": 1, "index": 7}, {"pred": 1, "label": 1, "index": 7},
                        {"pred": 0, "label": 1, "index": 3}])  # fmt: skip
    assert metric.compute_metrics(metric.results) == {"top1": 0.5, "scored": 2}


def test_the_finetune_report_states_the_images_each_split_used(tmp_path, capsys):
    write_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    (tmp_path / "pets" / "cat" / "0.png").write_bytes(b"not an image")  # held out (val_fraction 0.4, seed 0)
    tool("finetune").main(["--backbone", "resnet18", "--data", str(tmp_path / "pets"), "--input-size", "32",
                           "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "4", "--val-fraction", "0.4",
                           "--work-dir", str(tmp_path / "run"), "--json", str(tmp_path / "result.json")])  # fmt: skip
    out = capsys.readouterr().out
    line = "images: training 6 listed, 0 unreadable (6 used); validation 4 listed, 1 unreadable (3 scored)"
    assert line in out, out
    assert json.loads((tmp_path / "result.json").read_text())["images"]["val"] == {
        "listed": 4, "unreadable": 1, "used": 3
    }


# --- item 6: fine-tuning never replaces another run's results -----------------------------------------------------


def test_finetune_into_a_used_work_dir_is_refused_and_keeps_its_files(tmp_path, capsys):
    write_folder(tmp_path / "pets", {"cat": 3, "dog": 3})
    used = tmp_path / "used"
    used.mkdir()
    (used / "curve.json").write_text("[]")
    (used / "epoch_1.pth").write_bytes(b"the earlier classifier")
    with pytest.raises(SystemExit) as stopped:
        tool("finetune").main(["--backbone", "resnet18", "--data", str(tmp_path / "pets"), "--input-size", "32",
                               "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "4",
                               "--work-dir", str(used)])  # fmt: skip
    assert stopped.value.code == 2
    assert f"work dir {used} holds another run's results (curve.json, epoch_1.pth)" in capsys.readouterr().err
    assert (used / "epoch_1.pth").read_bytes() == b"the earlier classifier"
    assert (used / "curve.json").read_text() == "[]"


def test_the_default_finetune_work_dir_is_new_for_each_run(tmp_path):
    finetune = tool("finetune")
    args = finetune.parse_args(["/x/pretrain/iter_400.pth"])
    assert args.work_dir is None
    first, second = finetune.new_work_dir(args, tmp_path), finetune.new_work_dir(args, tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.startswith("iter_400_") and second.name == f"{first.name}_2"


# --- item 7: batch size and other counts below their least value are named ---------------------------------------


@pytest.mark.parametrize("size", [0, -1, 2.5])
def test_a_batch_size_below_one_is_named(size):
    with pytest.raises(ValueError, match=rf"IterationBatchSampler: batch_size must be an integer >= 1, got {size}"):
        IterationBatchSampler(InfiniteIndexSampler(range(10), seed=0), size)


@pytest.mark.parametrize(
    ("option", "value"),
    [("train_dataloader.batch_size", 0), ("train_dataloader.batch_size", -1), ("train_cfg.max_iters", 0),
     ("train_dataloader.num_workers", -2)],
)  # fmt: skip
def test_train_names_a_count_below_its_least_value_in_one_line(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as stopped:
        tool("train").main([str(CONFIG), "--work-dir", str(tmp_path), "--cfg-options", f"{option}={value}"])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2
    assert err.startswith(f"train: {option} must be an integer >= ") and err.endswith(f"got {value}"), err
    assert len(err.splitlines()) == 1


# --- item 9: a FIFO where a file was listed never blocks a read -------------------------------------------------


def test_an_image_that_became_a_fifo_is_skipped_without_blocking(tmp_path):
    write_folder(tmp_path / "images", {"a": 3})
    dataset = ImageFolder(str(tmp_path / "images"), image_size=32)
    fifo = tmp_path / "images" / "a" / "0.png"
    fifo.unlink()
    os.mkfifo(fifo)
    item = finishes(lambda: dataset[0], fifo)
    assert item["data_samples"]["index"] == 1 and dataset.skipped_count == 1
    assert "is a FIFO (named pipe), not a regular file" in dataset.skipped[0][1]


def test_a_file_list_cache_that_became_a_fifo_is_rebuilt_without_blocking(tmp_path):
    write_folder(tmp_path / "images", {"a": 2})
    cache = tmp_path / "list.bin"
    os.mkfifo(cache)
    listing = finishes(lambda: list_images(tmp_path / "images", cache), cache)
    assert len(listing.names) == 2 and cache.is_file()  # walked, and the cache written over the FIFO


def test_shards_that_became_fifos_never_block(tmp_path):
    write_folder(tmp_path / "images", {"a": 4})
    pack_folder(tmp_path / "images", tmp_path / "shards", samples_per_shard=2, seed=None)
    stream = ImageShards(str(tmp_path / "shards"), image_size=32, shuffle_buffer=0, repeat=False)
    shard = tmp_path / "shards" / "shard-000001.tar"
    shard.unlink()
    os.mkfifo(shard)
    items = finishes(lambda: list(stream), shard)
    assert [item["data_samples"]["index"] for item in items] == [0, 1] and stream.skipped_count == 1


def test_open_regular_file_names_what_it_refuses(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFileError, match="pipe is a FIFO"):
        finishes(lambda: open_regular_file(fifo), fifo)
    with pytest.raises(NotARegularFileError, match="pipe is a FIFO"):  # how make_shards reads what it packs
        finishes(lambda: read_regular_bytes(fifo), fifo)
    with pytest.raises(NotARegularFileError, match="is a character device"):
        open_regular_file("/dev/zero")
    with pytest.raises(NotARegularFileError, match="is a folder"):
        open_regular_file(tmp_path)
    (tmp_path / "f").write_bytes(b"x")
    with open_regular_file(tmp_path / "f") as stream:
        assert stream.read() == b"x" and stream.name == str(tmp_path / "f")


# --- item 10: a missing config, a work dir or --out that is a file: one line naming it, exit 2 ---------------------


@pytest.mark.parametrize(
    ("name", "argv", "message"),
    [
        ("train", ["{tmp}/missing.py"], "argument config: no such file: '{tmp}/missing.py'"),
        ("train", [str(CONFIG), "--work-dir", "{tmp}/file"], "--work-dir: '{tmp}/file' is a file, not a folder"),
        ("train", [str(CONFIG), "--work-dir", "{tmp}/file/run"], "'{tmp}/file' (a folder of '{tmp}/file/run') is a"),
        ("demo", ["{tmp}/missing.py"], "argument config: no such file"),
        ("demo", [str(CONFIG), "--work-dir", "{tmp}/file"], "argument --work-dir: '{tmp}/file' is a file"),
        ("make_shards", ["{tmp}", "--out", "{tmp}/file"], "argument --out: '{tmp}/file' is a file, not a folder"),
        ("finetune", ["--backbone", "resnet18", "--work-dir", "{tmp}/file"], "argument --work-dir: '{tmp}/file' is a"),
        ("finetune", ["--backbone", "resnet18", "--data", "{tmp}", "--json", "{tmp}"], "argument --json: '{tmp}' is a"),
        ("evaluate", [*EVALUATE_QUICKLY, "--work-dir", "{tmp}/file"], "argument --work-dir: '{tmp}/file' is a"),
        ("evaluate", [*EVALUATE_QUICKLY, "--json", "{tmp}"], "argument --json: '{tmp}' is a folder"),
        ("visualize", ["{tmp}/missing.pth"], "argument checkpoint: no such file"),
        ("visualize", ["{tmp}/file", "--out", "{tmp}"], "argument --out: '{tmp}' is a folder"),
        ("flops", ["resnet18", "--json", "{tmp}"], "argument --json: '{tmp}' is a folder"),
        ("make_scenes", ["--out", "{tmp}/file", "--mode", "shapes"], "argument --out: '{tmp}/file' is a file"),
    ],
    ids=lambda value: value if isinstance(value, str) and "/" not in value else None,
)  # fmt: skip
def test_a_path_that_cannot_be_used_is_named_before_any_work(tmp_path, capsys, name, argv, message):
    (tmp_path / "file").write_text("a regular file")
    with pytest.raises(SystemExit) as stopped:
        tool(name).main([arg.format(tmp=tmp_path) for arg in argv])
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert message.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1, err


# --- beyond: the comparison's numbers were taken as any int or float --------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [("--batch-size", "0"), ("--iters", "0"), ("--jobs", "0"), ("--seeds", "-1"), ("--input-size", "50"),
     ("--mask-ratio", "1.5"), ("--minutes", "-1"), ("--labelled", "0"), ("--finetune-epochs", "0"),
     ("--test-limit", "-5")],
)  # fmt: skip
def test_a_bad_number_for_the_comparison_is_named(capsys, option, value):
    with pytest.raises(SystemExit) as stopped:
        tool("compare").parse_args([option, value])
    assert stopped.value.code == 2
    assert f"argument {option}: must be" in capsys.readouterr().err
