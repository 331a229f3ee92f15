"""Resume edge cases: a relative `last_checkpoint`, a copied work dir, a truncated / empty / dangling latest save,
and a work dir with nothing to resume."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from hiermae.checkpoints.resume import (
    POINTER,
    NothingToResumeError,
    ResumeFallbackWarning,
    checkpoint_to_resume,
    read_pointer,
    write_pointer,
)
from hiermae.checkpoints.safe_load import load_checkpoint_file
from hiermae.engine.training import build_config

from small_training import CONFIG, ROOT, small_options, train_command


def save(work_dir: Path, iteration: int, truncate: bool = False) -> Path:
    """A small zip checkpoint `iter_<iteration>.pth`, cut in half when `truncate`."""
    path = work_dir / f"iter_{iteration}.pth"
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"iter": iteration}, "state_dict": {"w": torch.full((1000,), float(iteration))}}, path)
    if truncate:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def test_the_pointer_is_relative_so_a_copied_work_dir_resumes_from_its_own_files(tmp_path):
    original = tmp_path / "original"
    write_pointer(original, save(original, 2))
    assert (original / POINTER).read_text() == "iter_2.pth"
    shutil.copytree(original, tmp_path / "copy")
    shutil.rmtree(original)
    assert checkpoint_to_resume(tmp_path / "copy") == tmp_path / "copy" / "iter_2.pth"


def test_an_old_absolute_pointer_in_a_copied_work_dir_names_the_copy(tmp_path):
    save(tmp_path / "original", 2)
    shutil.copytree(tmp_path / "original", tmp_path / "copy")
    (tmp_path / "copy" / POINTER).write_text(str(tmp_path / "original" / "iter_2.pth"))  # as mmengine writes it
    assert read_pointer(tmp_path / "copy") == tmp_path / "copy" / "iter_2.pth"


def test_a_truncated_latest_checkpoint_falls_back_to_the_newest_intact_one_with_a_warning(tmp_path):
    save(tmp_path, 2)
    write_pointer(tmp_path, save(tmp_path, 4, truncate=True))
    with pytest.warns(ResumeFallbackWarning, match=r"could not read .*iter_4\.pth: unreadable .*newest intact .*2"):
        assert checkpoint_to_resume(tmp_path) == tmp_path / "iter_2.pth"


@pytest.mark.parametrize(("pointer", "named"), [("", "last_checkpoint is empty"), ("iter_9.pth", "does not exist")])
def test_an_empty_or_dangling_pointer_falls_back_with_a_warning(tmp_path, pointer, named):
    save(tmp_path, 2)
    save(tmp_path, 4)
    (tmp_path / POINTER).write_text(pointer)
    with pytest.warns(ResumeFallbackWarning, match=named):
        assert checkpoint_to_resume(tmp_path) == tmp_path / "iter_4.pth"


def test_nothing_to_resume_is_said_plainly(tmp_path):
    with pytest.raises(NothingToResumeError, match=r"nothing to resume in .*: it holds no last_checkpoint and no iter"):
        checkpoint_to_resume(tmp_path)
    write_pointer(tmp_path, save(tmp_path, 2, truncate=True))
    with pytest.raises(NothingToResumeError, match=r"could not read .*iter_2\.pth: unreadable.*Run without --resume"):
        checkpoint_to_resume(tmp_path)


def test_resume_auto_takes_the_intact_checkpoint_and_refuses_an_empty_work_dir(tmp_path):
    save(tmp_path / "run", 2)
    cfg = build_config(str(CONFIG), work_dir=str(tmp_path / "run"), resume="auto")
    assert cfg.resume and cfg.load_from == str(tmp_path / "run" / "iter_2.pth")
    with pytest.raises(NothingToResumeError):
        build_config(str(CONFIG), work_dir=str(tmp_path / "empty"), resume="auto")


def test_train_with_resume_and_nothing_to_resume_stops_before_training(tmp_path):
    spec = importlib.util.spec_from_file_location("train_tool", ROOT / "tools" / "train.py")
    train_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_tool)
    command = train_command(tmp_path, "--resume", options=small_options(iters=2, images=8, checkpoint_every=2))
    with pytest.raises(NothingToResumeError, match=f"--resume: nothing to resume in {tmp_path}"):
        train_tool.main(command[2:])  # after the interpreter and the script
    assert not list(tmp_path.glob("*"))


@pytest.mark.slow
def test_a_copied_work_dir_with_a_truncated_latest_save_resumes_from_its_previous_one(tmp_path):
    """End to end: the checkpoint hook writes a relative pointer and the model config as data; the copy resumes."""
    first = subprocess.run(
        train_command(tmp_path / "a", options=small_options(iters=4, images=16, checkpoint_every=2)),
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "a" / POINTER).read_text() == "iter_4.pth"
    meta = load_checkpoint_file(tmp_path / "a" / "iter_4.pth")["meta"]
    assert meta["model_cfg"]["backbone"] == "resnet18" and meta["model_cfg"]["decoder"]["width"] == 32
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    latest = tmp_path / "b" / "iter_4.pth"
    latest.write_bytes(latest.read_bytes()[:1000])
    resumed = subprocess.run(
        train_command(tmp_path / "b", "--resume", options=small_options(iters=5, images=16, checkpoint_every=2)),
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert f"could not read {latest}" in log and "resumed epoch: 0, iter: 2" in log and "Iter(train) [3/5]" in log
