"""Issue 20, items 1 and 2: a diverging run keeps a finite checkpoint and names it; non-finite weights are never
saved, resumed, exported, scored or fine-tuned from."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader
from torch.utils.data import Dataset

import hiermae
from hiermae.checkpoints import CheckpointError, non_finite_tensors
from hiermae.checkpoints.resume import ResumeFallbackWarning, checkpoint_to_resume, write_pointer
from hiermae.checkpoints.runner import check_checkpoint_fits, use_safe_checkpoint_loader
from hiermae.downstream.checkpoints import read_encoder_weights
from hiermae.downstream.pretrained import load_backbone

from checkpoint_files import write_pretraining_checkpoint
from small_training import ROOT, small_options, train_command


class Flags(Dataset):
    """Item i is 1.0 when i is poisoned, else 0.0."""

    def __init__(self, poisoned: int, length: int = 20) -> None:
        self.poisoned, self.length = poisoned, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return {"inputs": torch.tensor(float(index == self.poisoned))}


class FiniteLossNaNGradient(BaseModel):
    """A finite loss every step; on a poisoned item the loss stays finite but its gradient is NaN (d√x at 0),
    as in the issue's run at learning rate 1e3 (iteration 13: finite loss, NaN gradient norm)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(4))

    def forward(self, inputs: list[torch.Tensor], data_samples: object = None, mode: str = "loss") -> dict:
        loss = (self.weight**2).sum()
        if float(inputs[0]):
            loss = loss + torch.sqrt(self.weight.sum() * 0)  # adds 0, gradient 0 * inf = NaN
        return {"loss": loss}


def run(tmp_path: Path, *, poisoned: int, hooks: list[dict], keep: int = 2, iters: int = 6) -> None:
    """A real mmengine run of `iters` iterations, saving at every one with hiermae's checkpoint hook."""
    runner = Runner(
        model=FiniteLossNaNGradient(),
        work_dir=str(tmp_path),
        experiment_name=f"divergence_{tmp_path.name}",
        train_dataloader=dict(
            dataset=Flags(poisoned), sampler=dict(type="DefaultSampler", shuffle=False), batch_size=1, num_workers=0
        ),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01), clip_grad=dict(max_norm=1.0)),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        default_hooks=dict(
            checkpoint=dict(type="PortableCheckpointHook", by_epoch=False, interval=1, max_keep_ckpts=keep)
        ),
        custom_hooks=hooks,
    )
    runner.train()


def saved(work_dir: Path) -> list[str]:
    return sorted(path.name for path in work_dir.glob("iter_*.pth"))


def test_a_nan_gradient_with_a_finite_loss_stops_the_run_and_names_the_finite_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError) as error:
        run(tmp_path, poisoned=2, hooks=[dict(type="NonFiniteLossHook")])  # iteration 3 sees item 2
    message = str(error.value)
    assert "non-finite gradient norm nan" in message and "NaN or infinite weights in 1 tensors [weight]" in message
    assert "at iteration 3" in message and f"Last good checkpoint: {tmp_path / 'iter_2.pth'}" in message
    assert saved(tmp_path) == ["iter_1.pth", "iter_2.pth"]
    for name in saved(tmp_path):
        assert not non_finite_tensors(torch.load(tmp_path / name, weights_only=False))
    assert checkpoint_to_resume(tmp_path) == tmp_path / "iter_2.pth"


def test_without_the_hook_the_save_refuses_and_the_rotation_keeps_the_last_finite_checkpoint(tmp_path):
    """mmengine's rotation deletes the oldest checkpoint before it saves the next: the check must come first."""
    stopped = r"not saved: iteration 3's weights .* \[state_dict\.weight\]; stopping\. Last good checkpoint: .*iter_2"
    with pytest.raises(FloatingPointError, match=stopped):
        run(tmp_path, poisoned=2, hooks=[], keep=1)
    assert saved(tmp_path) == ["iter_2.pth"] and (tmp_path / "last_checkpoint").read_text() == "iter_2.pth"


def test_non_finite_tensors_are_named_at_any_depth():
    checkpoint = {
        "state_dict": {"a": torch.ones(2), "b": torch.tensor([1.0, float("inf")]), "steps": torch.tensor([3])},
        "optimizer": {"state": {0: {"exp_avg": torch.tensor([float("nan")])}}, "param_groups": [{"lr": 0.1}]},
        "meta": {"history": [torch.zeros(1), torch.tensor([float("-inf")], dtype=torch.bfloat16)]},
    }
    assert non_finite_tensors(checkpoint) == ["state_dict.b", "optimizer.state.0.exp_avg", "meta.history.1"]
    finite = {"w": torch.ones(3), "empty": torch.zeros(0), "large": torch.tensor([1e300], dtype=torch.float64)}
    assert non_finite_tensors(finite) == []


def nan_checkpoint(path: Path, iteration: int, finite: bool = False) -> Path:
    """A small checkpoint as mmengine writes it; its weight is NaN unless `finite`."""
    value = 1.0 if finite else float("nan")
    torch.save({"meta": {"iter": iteration}, "state_dict": {"w": torch.full((8,), value)}}, path)
    return path


def test_resume_skips_a_non_finite_checkpoint_with_a_warning(tmp_path):
    nan_checkpoint(tmp_path / "iter_2.pth", 2, finite=True)
    write_pointer(tmp_path, nan_checkpoint(tmp_path / "iter_4.pth", 4))
    with pytest.warns(ResumeFallbackWarning, match=r"iter_4\.pth: 1 non-finite tensors \[state_dict\.w\]"):
        assert checkpoint_to_resume(tmp_path) == tmp_path / "iter_2.pth"


def test_an_explicit_non_finite_resume_or_load_from_checkpoint_is_refused(tmp_path):
    torch.manual_seed(0)
    model = hiermae.build_pretrainer("resnet18", input_size=64, decoder={"type": "unet", "width": 32})
    state_dict = model.state_dict()
    state_dict["encoder.model.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"state_dict": state_dict, "meta": {}}, tmp_path / "diverged.pth")
    with pytest.raises(CheckpointError, match=r"NaN or infinite values in 1 tensors \[state_dict\.encoder\.model"):
        check_checkpoint_fits(model, str(tmp_path / "diverged.pth"))


def test_mmengine_s_loader_refuses_a_non_finite_file_for_init_cfg_and_load_from(tmp_path):
    """A downstream `init_cfg=dict(type='Pretrained', checkpoint=...)` or `load_from` reads through this loader."""
    path = nan_checkpoint(tmp_path / "diverged.pth", 4)
    for trust in (False, True):
        use_safe_checkpoint_loader(trust)
        with pytest.raises(CheckpointError, match=r"NaN or infinite values in 1 tensors \[state_dict\.w\]"):
            CheckpointLoader.load_checkpoint(str(path))
    use_safe_checkpoint_loader()
    assert torch.equal(CheckpointLoader.load_checkpoint(str(nan_checkpoint(path, 2, finite=True)))["state_dict"]["w"],
                       torch.ones(8))  # fmt: skip


@pytest.fixture
def diverged_export_source(tmp_path) -> Path:
    """A ResNet-18 pretraining checkpoint whose encoder has two non-finite tensors (its decoder is finite)."""
    path = tmp_path / "iter_13.pth"
    write_pretraining_checkpoint(path, "resnet18", 64)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["state_dict"]["encoder.model.conv1.weight"][0] = float("nan")
    checkpoint["state_dict"]["encoder.model.fc.weight"] = torch.zeros(1)  # a head key: dropped, not checked
    checkpoint["state_dict"]["encoder.model.layer4.1.bn2.running_var"][3] = float("inf")
    torch.save(checkpoint, path)
    return path


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "tools" / name), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


NAMED = "holds NaN or infinite weights in 2 encoder tensors [conv1.weight, layer4.1.bn2.running_var]"


def test_export_refuses_non_finite_weights_naming_them(diverged_export_source, tmp_path):
    result = tool("export.py", str(diverged_export_source), "--format", "timm", "--out", str(tmp_path / "out.pth"))
    assert result.returncode == 2 and not (tmp_path / "out.pth").exists()
    assert result.stderr.strip().splitlines() == [f"export failed: checkpoint {diverged_export_source} {NAMED}: "
                                                  "it was saved after its run diverged. Use an earlier checkpoint."]


def test_evaluate_refuses_non_finite_weights_naming_them(diverged_export_source):
    args = ("--protocol", "knn", "--train-limit", "20", "--test-limit", "10")
    result = tool("evaluate.py", str(diverged_export_source), *args)
    assert result.returncode == 2 and "top-1" not in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith(f"evaluate failed: checkpoint {diverged_export_source}")
    assert NAMED in result.stderr


def test_fine_tuning_and_probes_read_no_non_finite_weights(diverged_export_source):
    for read in (read_encoder_weights, load_backbone):
        with pytest.raises(CheckpointError, match=r"2 encoder tensors \[conv1\.weight"):
            read(diverged_export_source)


@pytest.mark.slow
def test_the_issue_s_diverging_run_keeps_a_finite_checkpoint_and_resumes_from_it(tmp_path):
    """The issue's command on the small run (learning rate 1e3, a save at every iteration, two kept). Before, the
    loss stayed finite while BatchNorm running variances overflowed (iteration 11) and the gradient norm turned NaN
    (iteration 13); iter_13.pth (316 non-finite tensors) was named "last good" and the rotation deleted the rest.
    Resuming the named checkpoint must load it (no further iteration: its optimiser state carries the 1e3 steps)."""
    options = [*small_options(iters=20, images=64, checkpoint_every=1), "optim_wrapper.optimizer.lr=1e3"]
    result = subprocess.run(train_command(tmp_path, options=options), cwd=ROOT, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode != 0 and "stopping before any checkpoint stores them" in log, log[-3000:]
    named = Path(log.split("Last good checkpoint: ")[1].split(" ")[0])
    assert named.parent == tmp_path and named.name in saved(tmp_path)
    for name in saved(tmp_path):
        assert not non_finite_tensors(torch.load(tmp_path / name, weights_only=False)), name
    assert checkpoint_to_resume(tmp_path) == named
    last = int(named.stem.removeprefix("iter_"))
    options = small_options(iters=last, images=64, checkpoint_every=1)
    resumed = subprocess.run(train_command(tmp_path, "--resume", options=options), cwd=ROOT, capture_output=True,
                             text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed epoch: 0, iter: {last}" in resumed.stdout + resumed.stderr
