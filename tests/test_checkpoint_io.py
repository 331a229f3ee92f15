"""The two library-level checkpoint fixes: torch ≥ 2.6 loading, and atomic writes that survive SIGKILL."""

import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import _load_checkpoint

from hiermae.checkpoint import trust_local_checkpoints


def test_mmengine_checkpoints_load_with_torch_weights_only_default(tmp_path):
    """mmengine's own checkpoints pickle a HistoryBuffer, which torch ≥ 2.6's default load refuses."""
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {}, "message_hub": {"log_scalars": {"loss": HistoryBuffer([1.0], [1])}}}, path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path)
    trust_local_checkpoints()
    loaded = _load_checkpoint(str(path), map_location="cpu")
    assert isinstance(loaded["message_hub"]["log_scalars"]["loss"], HistoryBuffer)


WRITER = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from pathlib import Path
    import torch
    from mmengine.runner.checkpoint import save_checkpoint
    from hiermae.checkpoint import configure_checkpoint_io

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
