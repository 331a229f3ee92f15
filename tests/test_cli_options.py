"""Every numeric option of the tools is checked for type and range, and the message names the option."""

import argparse
import importlib.util

import pytest

from hiermae.engine.cli_options import image_size, number, positive_int, random_seed, ratio

from small_training import ROOT

BAD_OPTIONS = [
    ("export", ["CKPT", "--format", "timm", "--out", "x.pth", "--input-size", "0"], "--input-size", "an integer in"),
    ("export", ["CKPT", "--format", "timm", "--out", "x.pth", "--input-size", "abc"], "--input-size", "got 'abc'"),
    ("evaluate", ["--backbone", "resnet18", "--input-size", "48"], "--input-size", "a multiple of 32"),
    ("evaluate", ["--backbone", "resnet18", "--train-limit", "0"], "--train-limit", "in [1, inf]"),
    ("evaluate", ["--backbone", "resnet18", "--test-limit", "-1"], "--test-limit", "got '-1'"),
    ("evaluate", ["--backbone", "resnet18", "--linear-epochs", "1.5"], "--linear-epochs", "an integer"),
    ("evaluate", ["--backbone", "resnet18", "--finetune-epochs", "0"], "--finetune-epochs", "in [1, inf]"),
    ("evaluate", ["--backbone", "resnet18", "--batch-size", "0"], "--batch-size", "in [1, inf]"),
    ("evaluate", ["--backbone", "resnet18", "--seed", "-1"], "--seed", "in [0, 4294967295]"),
    ("evaluate", ["--backbone", "resnet18", "--seed", str(2**32)], "--seed", "in [0, 4294967295]"),
    ("visualize", ["CKPT", "--images", "0"], "--images", "in [1, inf]"),
    ("visualize", ["CKPT", "--mask-ratio", "1.0"], "--mask-ratio", "in (0.0, 1.0)"),
    ("visualize", ["CKPT", "--mask-ratio", "nan"], "--mask-ratio", "got 'nan'"),
    ("visualize", ["CKPT", "--seed", "x"], "--seed", "got 'x'"),
    ("flops", ["resnet18", "--input-size", "100"], "--input-size", "a multiple of 32"),
    ("flops", ["resnet18", "--mask-ratio", "0"], "--mask-ratio", "in (0.0, 1.0)"),
    ("make_scenes", ["--out", "d", "--train", "0"], "--train", "in [1, inf]"),
    ("make_scenes", ["--out", "d", "--val", "-1"], "--val", "in [1, inf]"),
    ("make_scenes", ["--out", "d", "--size", "16"], "--size", "in [32, inf]"),
    ("make_scenes", ["--out", "d", "--max-objects", "0"], "--max-objects", "in [1, inf]"),
    ("make_scenes", ["--out", "d", "--seed", "1e3"], "--seed", "got '1e3'"),
]


def tool(name: str):  # noqa: ANN201 - the module of tools/<name>.py
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "argv", "option", "message"), BAD_OPTIONS, ids=[f"{c[0]} {' '.join(c[1][-2:])}" for c in BAD_OPTIONS]
)
def test_a_bad_numeric_option_stops_the_tool_naming_the_option(capsys, name, argv, option, message):
    with pytest.raises(SystemExit) as exit_info:
        tool(name).main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"argument {option}: must be" in err and message in err, err


def test_the_option_kinds_accept_their_range_and_nothing_else():
    assert (positive_int("1"), image_size("96"), random_seed("0"), ratio("0.5")) == (1, 96, 0, 0.5)
    for parse, text in [(positive_int, "0"), (image_size, "64.0"), (ratio, "inf"), (ratio, "0"), (random_seed, "")]:
        with pytest.raises(argparse.ArgumentTypeError, match=f"got {text!r}"):
            parse(text)
    with pytest.raises(argparse.ArgumentTypeError, match="a number in"):
        number(float, minimum=0.0)("inf")
