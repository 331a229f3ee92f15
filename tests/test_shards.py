import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.dataset import pseudo_collate
from PIL import Image
from torch.utils.data import DataLoader

from hiermae.data.shards import ImageShards, pack_folder

COLOURS = {"ants": (200, 30, 30), "bees": (30, 200, 30), "cats": (30, 30, 200)}
IMAGES_PER_CLASS = 7  # 21 images


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three classes of uniformly coloured images (PNG: exact pixels), of varied sizes."""
    root = tmp_path_factory.mktemp("images")
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for index in range(IMAGES_PER_CLASS):
            Image.new("RGB", (40 + index, 36), colour).save(root / name / f"{index}.png")
    return root


def pack(folder: Path, out: Path, per_shard: int) -> Path:
    pack_folder(folder, out, samples_per_shard=per_shard)
    return out


def read_indices(root: Path, workers: int) -> list[int]:
    dataset = ImageShards(str(root), image_size=32, shuffle_buffer=5, repeat=False)
    loader = DataLoader(dataset, batch_size=3, num_workers=workers, collate_fn=pseudo_collate)
    return [index for batch in loader for index in batch["data_samples"]["index"]]


def test_every_sample_arrives_once_with_its_pixels_and_label(folder, tmp_path):
    shards = pack_folder(folder, tmp_path / "shards", samples_per_shard=4)
    assert [shard.count for shard in shards] == [4, 4, 4, 4, 4, 1]
    dataset = ImageShards(str(tmp_path / "shards"), image_size=32, shuffle_buffer=8, repeat=False)
    assert dataset.num_samples == 21 and dataset.metainfo["classes"] == tuple(COLOURS)
    items = list(dataset)
    assert sorted(item["data_samples"]["index"] for item in items) == list(range(21))
    for item in items:
        assert item["inputs"].shape == (3, 32, 32) and item["inputs"].dtype == torch.uint8
        colour = COLOURS[dataset.metainfo["classes"][item["data_samples"]["label"]]]
        assert (item["inputs"] == torch.tensor(colour, dtype=torch.uint8)[:, None, None]).all()
    order = [item["data_samples"]["index"] for item in items]
    assert order != sorted(order)  # shard order and the shuffle buffer mix the samples
    by_index = {item["data_samples"]["index"]: item for item in items}
    for index in (0, 3, 4, 20):  # random access (the reconstruction hook's first images) gives the same sample
        item = dataset[index]
        assert item["data_samples"] == by_index[index]["data_samples"]
        assert (item["inputs"] == by_index[index]["inputs"]).all()  # uniform colours: any crop looks the same
    with pytest.raises(IndexError, match="index 21 is out of range for 21 samples"):
        dataset[21]


def test_repeated_passes_cover_the_data_again_in_another_order(folder, tmp_path):
    dataset = ImageShards(str(pack(folder, tmp_path / "shards", 4)), image_size=32, shuffle_buffer=4)
    stream = iter(dataset)
    first, second = ([next(stream)["data_samples"]["index"] for _ in range(21)] for _ in range(2))
    assert sorted(first) == sorted(second) == list(range(21)) and first != second
    unshuffled = ImageShards(str(tmp_path / "shards"), image_size=32, shuffle_buffer=0, repeat=False)
    indices = [item["data_samples"]["index"] for item in unshuffled]
    assert sorted(indices) == list(range(21))  # shards in a drawn order, each read through in its stored order
    pairs = list(zip(indices[:-1], indices[1:]))
    assert all(b == a + 1 for a, b in pairs if a // 4 == b // 4) and sum(a // 4 != b // 4 for a, b in pairs) == 5


def shard_rank(rank: int, world: int, port: int, roots: list[str], out_dir: str) -> None:
    """One gloo rank of the two-rank test: read every shard folder with 2 data-loader workers, record the indices."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        indices = {root: read_indices(Path(root), workers=2) for root in roots}
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(indices))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_read_disjoint_samples_that_cover_the_data(folder, tmp_path):
    """2 ranks × 2 workers = 4 readers: 6 shards are split by shard, 3 shards (fewer than readers) by sample."""
    roots = [str(pack(folder, tmp_path / "six", 4)), str(pack(folder, tmp_path / "three", 8))]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.start_processes(
        shard_rank, args=(2, port, roots, str(tmp_path)), nprocs=2, join=False, start_method="fork"
    )
    deadline = time.monotonic() + 120
    try:
        while not context.join(timeout=1):
            assert time.monotonic() < deadline, "gloo ranks did not finish in 120 s"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    for root in roots:
        first, second = ranks[0][root], ranks[1][root]
        assert first and second, f"{root}: a rank read nothing"
        assert len(set(first)) == len(first) and len(set(second)) == len(second)  # no repeats within a rank
        assert not set(first) & set(second), f"{root}: ranks overlap"
        assert sorted(first + second) == list(range(21)), f"{root}: not every sample was read"


def test_undecodable_samples_and_damaged_shards_are_skipped_and_counted(folder, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a", "b", "c"):
        Image.new("RGB", (40, 40), (1, 2, 3)).save(bad / f"{name}.png")
    (bad / "d.png").write_bytes(b"not a png")
    root = pack(bad, tmp_path / "shards", 2)  # shards: 2 + 2 samples
    items = list(ImageShards(str(root), image_size=32, repeat=False))
    assert len(items) == 3
    damaged = root / "shard-000001.tar"
    damaged.write_bytes(damaged.read_bytes()[:700])  # cut inside the first sample's image
    dataset = ImageShards(str(root), image_size=32, repeat=False)
    assert len(list(dataset)) in (1, 2) and dataset.skipped_count >= 1


def test_shard_folder_errors_are_named(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        ImageShards(str(tmp_path))
    root = pack(folder, tmp_path / "shards", 10)
    (root / "shard-000001.tar").unlink()
    with pytest.raises(FileNotFoundError, match="1 shards missing .shard-000001.tar"):
        ImageShards(str(root))
    (root / "manifest.json").write_text("{")
    with pytest.raises(ValueError, match="not a valid shard manifest"):
        ImageShards(str(root))
    with pytest.raises(ValueError, match="samples_per_shard must be at least 1"):
        pack_folder(folder, tmp_path / "x", samples_per_shard=0)


def test_make_shards_packs_a_folder_and_refuses_an_output_inside_it(folder, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_shards", Path(__file__).parents[1] / "tools/make_shards.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    main = tool.main
    main([str(folder), "--out", str(tmp_path / "shards"), "--samples-per-shard", "5"])
    assert "packed 21 images" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert [shard["count"] for shard in manifest["shards"]] == [5, 5, 5, 5, 1]
    with pytest.raises(SystemExit):
        main([str(folder), "--out", str(folder / "shards")])
    assert "inside the source folder" in capsys.readouterr().err
    assert not (folder / "shards").exists()


def train_on(config: str, root: Path, work_dir: Path, *args: str, iters: int = 6) -> str:
    """A few ResNet-18 iterations of a shipped 224-px data config, shrunk to 64 px, with 2 data-loader workers."""
    repo = Path(__file__).parents[1]
    options = [
        "model.backbone=resnet18", "model.input_size=64", "model.decoder.width=32", "warmup_iters=2",
        "train_dataloader.dataset.image_size=64", f"train_dataloader.dataset.root={root}",
        "train_dataloader.batch_size=8", "train_dataloader.num_workers=2", f"train_cfg.max_iters={iters}",
        "default_hooks.logger.interval=2", "custom_hooks.0.interval=6",
    ]  # fmt: skip
    command = [sys.executable, str(repo / "tools/train.py"), str(repo / config), "--work-dir", str(work_dir), *args]
    result = subprocess.run(
        [*command, "--cfg-options", *options], cwd=repo, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_the_shard_config_pretrains_past_one_pass_without_restarting(folder, tmp_path):
    root = pack(folder, tmp_path / "shards", 4)
    log = train_on("configs/pretrain/hiermae_resnet50_224px_shards.py", root, tmp_path / "work")
    assert "Iter(train) [6/6]" in log  # 48 images drawn from 21: three passes
    assert "Reach the end of the dataloader" not in log and "Length of IterableDataset" not in log
    assert (tmp_path / "work" / "iter_6.pth").exists() and (tmp_path / "work" / "reconstructions").is_dir()
    log = train_on("configs/pretrain/hiermae_resnet50_224px_shards.py", root, tmp_path / "work", "--resume", iters=8)
    assert "the stream starts a new pass" in log and "Advance dataloader" not in log and "Iter(train) [8/8]" in log


@pytest.mark.slow
def test_the_image_folder_config_caches_its_file_list_in_the_work_dir(folder, tmp_path):
    log = train_on("configs/pretrain/hiermae_resnet50_224px_imagefolder.py", folder, tmp_path / "work")
    assert "Iter(train) [6/6]" in log and "(walked)" in log
    assert (tmp_path / "work" / "file_lists" / "train_dataloader.bin").is_file()
    log = train_on("configs/pretrain/hiermae_resnet50_224px_imagefolder.py", folder, tmp_path / "work", "--resume",
                   iters=7)  # fmt: skip
    assert "(cache " in log  # the restart did not walk the folder again
