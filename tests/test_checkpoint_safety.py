"""Checkpoints are data: a malicious pickle or code in the stored config text is refused by every reader a user can
point at a file (export, evaluate, visualize, resume / load_from / init_cfg through mmengine), and nothing runs.

Every test keeps a marker file that the payload would write; it must not appear. The payloads are shown to be
live: unpickled in full (`--trust-checkpoint`), or executed as mmengine would, they do write their marker.
"""

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint

import hiermae
from hiermae.checkpoints.keys import CheckpointError
from hiermae.checkpoints.runner import check_checkpoint_fits, configure_checkpoint_io
from hiermae.checkpoints.safe_load import TrustedCheckpointWarning, UnsafeCheckpointError, load_checkpoint_file
from hiermae.downstream.checkpoints import read_encoder_weights
from hiermae.downstream.export import export_checkpoint
from hiermae.downstream.pretrained import load_backbone

from checkpoint_files import RunsCode, write_pretraining_checkpoint
from small_training import ROOT


def tool(name: str):  # noqa: ANN201 - the module of tools/<name>.py
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def malicious(tmp_path: Path) -> tuple[Path, Path]:
    """A resnet18 pretraining checkpoint whose meta holds an object that runs code when unpickled in full."""
    marker = tmp_path / "pickle-ran"
    write_pretraining_checkpoint(tmp_path / "evil.pth", "resnet18", 64, note=RunsCode(marker))
    return tmp_path / "evil.pth", marker


def export_cli(path: Path, out: Path) -> None:
    tool("export").main([str(path), "--format", "timm", "--out", str(out)])


def visualize(path: Path, out: Path) -> None:
    tool("visualize").load_pretrainer(path)


def mmengine_loader(path: Path, out: Path) -> None:
    """What resume, load_from and a downstream init_cfg checkpoint call under tools/train.py."""
    configure_checkpoint_io()
    _load_checkpoint(str(path), map_location="cpu")


def resume_check(path: Path, out: Path) -> None:
    check_checkpoint_fits(hiermae.build_pretrainer("resnet18", input_size=64), str(path))


READERS = {
    "load_checkpoint_file": lambda path, out: load_checkpoint_file(path),
    "export": lambda path, out: export_checkpoint(path, "timm", out),
    "evaluate (read_encoder_weights)": lambda path, out: read_encoder_weights(path),
    "fine-tune / probe (load_backbone)": lambda path, out: load_backbone(path),
    "visualize": visualize,
    "mmengine loader (resume, load_from, init_cfg)": mmengine_loader,
    "resume / load_from fit check": resume_check,
}


@pytest.mark.parametrize("reader", list(READERS))
def test_a_malicious_pickle_is_refused_by_every_reader_and_runs_nothing(malicious, tmp_path, reader):
    path, marker = malicious
    with pytest.raises(UnsafeCheckpointError, match=rf"checkpoint {path} is refused: .*GLOBAL exec .*--trust-check"):
        READERS[reader](path, tmp_path / "out.pth")
    assert not marker.exists() and not (tmp_path / "out.pth").exists()


def test_the_export_tool_exits_2_naming_the_file_and_the_flag(malicious, tmp_path, capsys):
    path, marker = malicious
    with pytest.raises(SystemExit) as exit_info:
        export_cli(path, tmp_path / "out.pth")
    assert exit_info.value.code == 2 and f"{path} is refused" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.parametrize("name", ["evaluate", "finetune"])
def test_the_evaluation_tools_exit_2_and_take_the_trust_flag(malicious, tmp_path, capsys, name):
    path, marker = malicious
    with pytest.raises(SystemExit) as exit_info:
        tool(name).main([str(path), "--work-dir", str(tmp_path / "work")])
    assert exit_info.value.code == 2 and f"{path} is refused" in capsys.readouterr().err and not marker.exists()
    assert tool(name).parse_args([str(path), "--trust-checkpoint"]).trust_checkpoint
    with pytest.warns(TrustedCheckpointWarning):
        load_backbone(path, trust=True)  # what the flag passes down: the payload runs
    assert marker.exists()


def test_the_payload_is_live_and_runs_only_when_trusted(malicious, tmp_path):
    path, marker = malicious
    with pytest.warns(TrustedCheckpointWarning, match="unpickling .* in full"):
        load_checkpoint_file(path, trust=True)
    assert marker.read_text() == "code from a checkpoint ran"


@pytest.mark.parametrize("payload", ["os.system", "subprocess.call", "builtins.eval", "builtins.__import__"])
def test_other_callables_are_refused(tmp_path, payload):
    module, name = payload.rsplit(".", 1)

    class Calls:
        def __reduce__(self):  # noqa: ANN204
            return getattr(importlib.import_module(module), name), (f"touch {tmp_path / 'ran'}",)

    torch.save({"state_dict": {}, "meta": Calls()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError, match="is refused"):
        load_checkpoint_file(tmp_path / "evil.pth")
    assert not (tmp_path / "ran").exists()


CODE = "__import__('os').system('touch {marker}')"
CONFIG_TEXTS = {
    "in the model config": "model = dict(type='MaskedPretrainer', backbone={code} or 'resnet18', input_size=64)\n",
    "as the model config": "model = {code}\n",
    "in a nested value": "model = dict(type='MaskedPretrainer', backbone='resnet18', mask=[{code}])\n",
}


@pytest.mark.parametrize("where", list(CONFIG_TEXTS))
def test_code_in_the_stored_config_is_refused_and_never_run(tmp_path, where):
    marker = tmp_path / "config-ran"
    text = CONFIG_TEXTS[where].format(code=CODE.format(marker=marker))
    write_pretraining_checkpoint(tmp_path / "evil.pth", "resnet18", 64, cfg_text=text)
    for read in (
        lambda: export_checkpoint(tmp_path / "evil.pth", "timm", tmp_path / "out.pth", trust=True),
        lambda: tool("visualize").load_pretrainer(tmp_path / "evil.pth"),
    ):
        with pytest.raises(CheckpointError, match="the stored config is refused, it is read as data and never run"):
            read()
    assert not marker.exists() and not (tmp_path / "out.pth").exists()
    Config.fromstring(text, ".py")  # what the readers did before: mmengine executes the text
    assert marker.exists()


def test_code_outside_the_model_config_is_ignored_and_never_run(tmp_path):
    marker = tmp_path / "config-ran"
    text = f"import os\nos.system('touch {marker}')\nmodel = dict(type='MaskedPretrainer', backbone='resnet18', " \
           "input_size=64)\n"  # fmt: skip
    write_pretraining_checkpoint(tmp_path / "pretrain.pth", "resnet18", 64, cfg_text=text)
    result = export_checkpoint(tmp_path / "pretrain.pth", "timm", tmp_path / "out.pth")
    assert result.report.ok and not marker.exists()


def test_the_plain_data_model_config_is_preferred_over_the_text(tmp_path):
    """hiermae's checkpoint hook stores `meta['model_cfg']`; the config text is then not even parsed."""
    write_pretraining_checkpoint(
        tmp_path / "pretrain.pth", "resnet18", 64, cfg_text="model = this is not python",
        model_cfg={"type": "MaskedPretrainer", "backbone": "resnet18", "input_size": 64},
    )  # fmt: skip
    assert read_encoder_weights(tmp_path / "pretrain.pth").backbone == "resnet18"


@pytest.mark.slow
def test_a_malicious_resume_checkpoint_stops_train_before_anything_runs(malicious, tmp_path):
    path, marker = malicious
    run = subprocess.run(
        [sys.executable, "tools/train.py", "configs/pretrain/hiermae_resnet18_64px_fashionmnist.py",
         "--work-dir", str(tmp_path / "run"), "--resume", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode != 0 and "UnsafeCheckpointError" in run.stderr and "Iter(train)" not in run.stdout
    assert not marker.exists()
