"""The library-level checkpoint fixes: mmengine's own checkpoints load as data (torch >= 2.6), and atomic writes
that survive SIGKILL."""

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

from hiermae.checkpoints.runner import use_safe_checkpoint_loader
from hiermae.checkpoints.safe_load import UnsafeCheckpointError, load_checkpoint_file


def runner_checkpoint(path):  # noqa: ANN001, ANN201
    """What an mmengine runner saves besides weights: its message hub (logged scalars in HistoryBuffers holding
    numpy arrays and their statistics methods, a numpy float ETA) and schedulers as plain dicts."""
    hub = MessageHub("checkpoint-test")
    for value in (1.5, 0.5):
        hub.update_scalar("train/loss", value)
    hub.update_info("eta", np.float64(12.5))
    hub.update_info("iter", 3)
    torch.save(
        {"meta": {"iter": 3}, "state_dict": {"w": torch.ones(2)}, "message_hub": hub.state_dict(),
         "param_schedulers": [{"last_step": 3, "base_values": [0.1]}]},
        path,
    )  # fmt: skip
    return path


def test_mmengine_checkpoints_load_as_data_through_mmengine(tmp_path):
    """torch >= 2.6's default load refuses the HistoryBuffer; hiermae's loader reads it with weights_only=True."""
    path = runner_checkpoint(tmp_path / "ckpt.pth")
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path)
    use_safe_checkpoint_loader()
    loaded = _load_checkpoint(str(path), map_location="cpu")
    history = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(history, HistoryBuffer) and history.mean() == 1.0 and history.current() == 0.5
    assert loaded["message_hub"]["runtime_info"]["eta"] == 12.5


def test_the_allowlist_is_no_wider_than_the_runner_needs(tmp_path):
    """numpy object arrays and any other getattr than HistoryBuffer's statistics stay refused."""
    torch.save({"w": np.array([1, 2], dtype=object)}, tmp_path / "objects.pth")
    with pytest.raises(UnsafeCheckpointError, match="objects.pth is refused"):
        load_checkpoint_file(tmp_path / "objects.pth")

    class Getter:
        def __reduce__(self):  # noqa: ANN204
            return getattr, (HistoryBuffer, "update")

    torch.save({"w": Getter()}, tmp_path / "getattr.pth")
    with pytest.raises(UnsafeCheckpointError, match=r"getattr\(.*HistoryBuffer.*'update'\) is not allowed"):
        load_checkpoint_file(tmp_path / "getattr.pth")


WRITER = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from pathlib import Path
    import torch
    from mmengine.runner.checkpoint import save_checkpoint
    from hiermae.checkpoints.runner import configure_checkpoint_io

    path = Path(sys.argv[1])
    if sys.argv[2] == "atomic":
        configure_checkpoint_io()
    save_checkpoint({"step": 1, "w": torch.zeros(10)}, str(path))

    def kill_mid_write():  # SIGKILL as soon as any file of ours is part-written with the 60 MB payload
        while True:
            for candidate in path.parent.iterdir():
                if path.name in candidate.name and 1_000_000 < candidate.stat().st_size < 59_000_000:
                    os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.0005)

    threading.Thread(target=kill_mid_write, daemon=True).start()
    save_checkpoint({"step": 2, "w": torch.ones(60_000_000 // 4)}, str(path))
    print("second save finished without being killed")
    """
)


def kill_during_second_save(tmp_path, mode: str) -> dict | None:
    path = tmp_path / f"{mode}.pth"
    result = subprocess.run([sys.executable, "-c", WRITER, str(path), mode], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr
    try:
        return torch.load(path, weights_only=False)
    except Exception:  # noqa: BLE001  (a truncated file fails in several ways)
        return None


@pytest.mark.slow
def test_a_kill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    loaded = kill_during_second_save(tmp_path, "atomic")
    assert loaded is not None and loaded["step"] == 1


@pytest.mark.slow
def test_without_the_fix_the_same_kill_leaves_a_truncated_file(tmp_path):
    """What the atomic backend prevents: mmengine's plain backend truncates the file before writing."""
    assert kill_during_second_save(tmp_path, "plain") is None
