"""Every user error is one line: each case runs `tganv2.cli.main` in-process and checks the exit code,
that stderr is exactly one line (with the expected words) and that there is no traceback.

Most cases fail in argument or config validation, before any model is built; the few that need a
generator use a tiny untrained snapshot written once per module.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_tiny_cfg, run_tganv2
from tganv2.cli import main
from tganv2.config import build_generator
from tganv2.metrics.classifier import VideoClassifier, save_classifier
from tganv2.snapshot import save_generator

ROOT = os.geteuid() == 0  # root ignores permission bits: read-only cases use /sys there


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny generator snapshot (4 levels), its damaged variants, a classifier and an ordinary file."""
    root = tmp_path_factory.mktemp("cli_errors")
    cfg = make_tiny_cfg()
    snapshot = save_generator(root / "g.safetensors", build_generator(cfg), cfg)
    state = load_file(str(snapshot))
    save_file(state, str(root / "bad_json.safetensors"), metadata={"config": "{not json"})
    save_file(state, str(root / "list_json.safetensors"), metadata={"config": "[1, 2]"})
    save_classifier(root / "cls.safetensors", VideoClassifier(width=2))
    (root / "file.txt").write_text("not a folder\n")
    run = root / "corrupt_run"
    run.mkdir()
    (run / "config.yaml").write_text("model: [unclosed\n")
    run2 = root / "list_run"
    run2.mkdir()
    (run2 / "config.yaml").write_text("- 1\n- 2\n")
    return {"root": root, "g": snapshot, "file": root / "file.txt", "cls": root / "cls.safetensors"}


def _out(files, name: str) -> str:
    return str(files["root"] / "outs" / name)


def _unwritable(files, name: str) -> str:
    """An output path whose folder cannot be created (root: under /sys; else under a read-only folder)."""
    if ROOT:
        return f"/sys/tganv2-test-{os.getpid()}/{name}"
    folder = files["root"] / "readonly"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o500)
    return str(folder / "sub" / name)


def _generate(f, *args: str) -> list[str]:
    """``tganv2 generate`` from the tiny snapshot, then ``args``."""
    return ["generate", "--checkpoint", str(f["g"]), *args]


def _evaluate_is(f, *args: str) -> list[str]:
    """``tganv2 evaluate is`` of the tiny snapshot, then ``args``."""
    return ["evaluate", "is", "--checkpoint", str(f["g"]), *args]


def _refused_values(command: str, argv, flag_values: list[tuple[str, str]]) -> list[tuple]:
    """One case per (flag, value): ``argv(files) + [flag, value]`` is refused in one line naming the flag;
    its id is COMMAND-FLAG-VALUE (a negative value reads "neg")."""

    def case(flag: str, value: str) -> tuple:
        name = f"{command}-{flag.removeprefix('--')}-{'neg' if value.startswith('-') else value}"
        return name, lambda f: [*argv(f), flag, value], 2, [flag]

    return [case(flag, value) for flag, value in flag_values]


# (id, argv builder, expected exit code, words the one line must contain)
CASES = [
    # --- train: flags ---------------------------------------------------------------------------
    ("train-iterations-0", lambda f: ["train", "--iterations", "0"], 2, ["--iterations must be >= 1, got 0"]),
    ("train-iterations-neg", lambda f: ["train", "--iterations", "-5"], 2, ["--iterations", "-5"]),
    ("train-checkpoint-every-0", lambda f: ["train", "--checkpoint-every", "0"], 2, ["--checkpoint-every"]),
    ("train-sample-every-0", lambda f: ["train", "--sample-every", "0"], 2, ["--sample-every"]),
    ("train-batch-0", lambda f: ["train", "--batch", "0"], 2, ["--batch"]),
    ("train-workers-neg", lambda f: ["train", "--workers", "-1"], 2, ["--workers must be >= 0, got -1"]),
    ("train-threads-0", lambda f: ["train", "--threads", "0"], 2, ["--threads"]),
    ("train-stop-after-0", lambda f: ["train", "--stop-after", "0"], 2, ["--stop-after"]),
    ("train-seed-neg", lambda f: ["train", "--seed", "-1"], 2, ["--seed"]),
    ("train-iterations-text", lambda f: ["train", "--iterations", "ten"], 2, ["--iterations", "'ten'"]),
    ("train-precision-fp16", lambda f: ["train", "--precision", "fp16"], 2, ["--precision", "fp16"]),
    ("train-unknown-flag", lambda f: ["train", "--epochs", "5"], 2, ["--epochs"]),
    (
        "train-device-tpu",
        lambda f: ["train", "--out", _out(f, "tpu"), "--device", "tpu"],
        2,
        ["--device tpu"],
    ),
    ("train-device-cuda9", lambda f: ["train", "--out", _out(f, "c9"), "--device", "cuda:9"], 2, ["cuda:9"]),
    ("train-out-file", lambda f: ["train", "--out", str(f["file"])], 2, ["--out", "is a file"]),
    ("train-out-under-file", lambda f: ["train", "--out", str(f["file"] / "run")], 2, ["cannot create"]),
    ("train-out-unwritable", lambda f: ["train", "--out", _unwritable(f, "run")], 2, ["--out"]),
    # --- train: config values (train.* and data.*) --------------------------------------------
    ("train-log-every-0", lambda f: ["train", "train.log_every=0"], 2, ["train.log_every", ">= 1"]),
    ("train-lr-0", lambda f: ["train", "train.lr=0"], 2, ["train.lr", "> 0"]),
    ("train-lr-neg", lambda f: ["train", "train.lr=-1e-4"], 2, ["train.lr"]),
    ("train-lr-nan", lambda f: ["train", "train.lr=nan"], 2, ["train.lr", "nan"]),
    ("train-lr-inf", lambda f: ["train", "train.lr=.inf"], 2, ["train.lr", "inf"]),
    ("train-lr-text", lambda f: ["train", "train.lr=fast"], 2, ["train.lr", "float"]),
    ("train-lr-decay-start-1", lambda f: ["train", "train.lr_decay_start=1"], 2, ["train.lr_decay_start"]),
    ("train-lr-decay-start-neg", lambda f: ["train", "train.lr_decay_start=-0.5"], 2, ["[0, 1)"]),
    ("train-betas-1", lambda f: ["train", "train.betas=[1.0,0.9]"], 2, ["train.betas", "[0, 1)"]),
    ("train-betas-neg", lambda f: ["train", "train.betas=[-0.1,0.9]"], 2, ["train.betas"]),
    ("train-betas-one-value", lambda f: ["train", "train.betas=[0.5]"], 2, ["train.betas"]),
    ("train-adam-eps-0", lambda f: ["train", "train.adam_eps=0"], 2, ["train.adam_eps", "> 0"]),
    ("train-n-dis-0", lambda f: ["train", "train.n_dis=0"], 2, ["train.n_dis", ">= 1"]),
    ("train-r1-neg", lambda f: ["train", "train.r1_lambda=-1"], 2, ["train.r1_lambda", ">= 0"]),
    ("train-r1-every-0", lambda f: ["train", "train.r1_every=0"], 2, ["train.r1_every", ">= 1"]),
    ("train-min-block-ch-neg", lambda f: ["train", "model.min_block_ch=-8"], 2, ["model.min_block_ch"]),
    ("train-build-blocks-0", lambda f: ["train", "model.build_blocks=0"], 2, ["model.build_blocks", "1..3"]),
    ("train-mbstd-1", lambda f: ["train", "model.d_mbstd_group=1"], 2, ["model.d_mbstd_group", ">= 2"]),
    (
        "train-mbstd-joint",
        lambda f: ["train", "model.d_mbstd_group=4", "train.d_joint_pass=true"],
        2,
        ["model.d_mbstd_group", "train.d_joint_pass=false"],
    ),
    ("train-lr-dis-neg", lambda f: ["train", "train.lr_dis=-1e-4"], 2, ["train.lr_dis", ">= 0"]),
    ("train-keep-neg", lambda f: ["train", "train.keep_checkpoints=-1"], 2, ["train.keep_checkpoints"]),
    ("train-eval-every-neg", lambda f: ["train", "train.eval_every=-1"], 2, ["train.eval_every"]),
    ("train-workers-key-neg", lambda f: ["train", "data.num_workers=-1"], 2, ["data.num_workers"]),
    ("train-synthetic-size-0", lambda f: ["train", "data.synthetic_size=0"], 2, ["data.synthetic_size"]),
    ("train-unknown-key", lambda f: ["train", "train.lr_decay=1"], 2, ["train.lr_decay"]),
    ("train-not-key-value", lambda f: ["train", "train.lr"], 2, ["key=value"]),
    ("train-unknown-preset", lambda f: ["train", "--preset", "demo-65"], 2, ["demo-65"]),
    ("train-missing-config", lambda f: ["train", "--config", str(f["root"] / "no.yaml")], 2, ["no.yaml"]),
    (  # demo-64 halves no batch (it crops its last level instead): give it a batch stride to break
        "train-batch-stride",
        lambda f: ["train", "--batch", "3", "model.batch_strides=[1,2]"],
        2,
        ["train.batch=3", "stride"],
    ),
    (
        "train-corrupt-config-yaml",
        lambda f: ["train", "--out", str(f["root"] / "corrupt_run")],
        2,
        ["config.yaml", "not valid YAML"],
    ),
    (
        "train-list-config-yaml",
        lambda f: ["train", "--out", str(f["root"] / "list_run")],
        2,
        ["config.yaml", "mapping"],
    ),
    (
        "train-missing-data",
        lambda f: ["train", "--out", _out(f, "nodata"), "--data", str(f["root"] / "missing")],
        2,
        ["missing", "no such file"],
    ),
    # --- generate ---------------------------------------------------------------------------------
    *_refused_values(
        "generate",
        lambda f: _generate(f, "--out", "x.mp4"),
        [
            ("--n", "0"),
            ("--batch", "0"),
            ("--level", "0"),
            ("--fps", "0"),
            ("--fps", "nan"),
            ("--frames", "0"),
            ("--nrow", "0"),
        ],
    ),
    (
        "generate-level-9",
        lambda f: _generate(f, "--out", _out(f, "l9.npz"), "--level", "9"),
        2,
        ["--level must be in 1..4", "9"],
    ),
    (
        "generate-out-suffix",
        lambda f: _generate(f, "--out", "x.avi"),
        2,
        [".npz"],
    ),
    (
        "generate-corrupt-json",
        lambda f: [
            "generate",
            "--checkpoint",
            str(f["root"] / "bad_json.safetensors"),
            "--out",
            _out(f, "a.npz"),
        ],
        2,
        ["bad_json.safetensors", "not valid JSON"],
    ),
    (
        "generate-non-mapping-json",
        lambda f: [
            "generate",
            "--checkpoint",
            str(f["root"] / "list_json.safetensors"),
            "--out",
            _out(f, "b.npz"),
        ],
        2,
        ["list_json.safetensors", "JSON object", "list"],
    ),
    (
        "generate-missing-checkpoint",
        lambda f: ["generate", "--checkpoint", str(f["root"] / "nope.pt"), "--out", _out(f, "c.npz")],
        2,
        ["not found", "nope.pt"],
    ),
    (
        "generate-not-a-checkpoint",
        lambda f: ["generate", "--checkpoint", str(f["file"]), "--out", _out(f, "d.npz")],
        2,
        ["file.txt"],
    ),
    (
        "generate-out-unwritable",
        lambda f: _generate(f, "--out", _unwritable(f, "x.mp4")),
        2,
        ["--out"],
    ),
    (
        "generate-device-tpu",
        lambda f: _generate(f, "--out", _out(f, "e.npz"), "--device", "tpu"),
        2,
        ["--device tpu"],
    ),
    # --- evaluate ---------------------------------------------------------------------------------
    *_refused_values(
        "evaluate-is",
        _evaluate_is,
        [("--n", "0"), ("--loops", "0"), ("--batch", "0"), ("--splits", "0")],
    ),
    (
        "evaluate-is-render-level-9",
        lambda f: _evaluate_is(
            f, "--classifier", str(f["cls"]), "--render-level", "9", "--out", _out(f, "is.json")
        ),
        2,
        ["--render-level must be in 1..4", "9"],
    ),
    (
        "evaluate-is-out-unwritable",
        lambda f: _evaluate_is(
            f,
            *("--classifier", str(f["cls"])),
            *("--n", "4", "--loops", "1", "--batch", "4", "--frames", "8", "--no-progress"),
            *("--out", _unwritable(f, "is.json")),
        ),  # scored first (the score is printed), then the record write fails in one line
        2,
        ["cannot write", "the result printed above is not lost"],
    ),
    (
        "evaluate-is-no-extractor",
        lambda f: _evaluate_is(f, "--out", _out(f, "i.json")),
        2,
        ["feature extractor"],
    ),
    (
        "evaluate-stats-n-real-0",
        lambda f: ["evaluate", "stats", "--data", "synthetic", "--out", "s.npz", "--n-real", "0"],
        2,
        ["--n-real"],
    ),
    (
        "evaluate-stats-workers-neg",
        lambda f: ["evaluate", "stats", "--data", "synthetic", "--out", "s.npz", "--num-workers", "-1"],
        2,
        ["--num-workers"],
    ),
    (
        "evaluate-train-classifier-steps-0",
        lambda f: ["evaluate", "train-classifier", "--out", "c.safetensors", "--steps", "0"],
        2,
        ["--steps"],
    ),
    (
        "evaluate-fid-device-tpu",
        lambda f: ["evaluate", "fid", "--checkpoint", str(f["g"]), "--stats", "s.npz", "--device", "tpu"],
        2,
        ["--device tpu"],
    ),
    # --- summary, data ----------------------------------------------------------------------------
    ("summary-batch-0", lambda f: ["summary", "--batch", "0"], 2, ["--batch"]),
    ("summary-bad-key", lambda f: ["summary", "model.n_layers=0"], 2, ["model."]),
    *_refused_values(
        "data-prepare",
        lambda f: ["data", "prepare", "folder", "--videos", ".", "--out", "o"],
        [("--workers", "0"), ("--workers", "-2"), ("--min-frames", "0")],
    ),
    (
        "data-prepare-out-unwritable",
        lambda f: ["data", "prepare", "folder", "--videos", str(f["root"]), "--out", _unwritable(f, "data")],
        2,
        ["--out"],
    ),
    (
        "data-prepare-out-file",
        lambda f: ["data", "prepare", "folder", "--videos", str(f["root"]), "--out", str(f["file"])],
        2,
        ["--out", "is a file"],
    ),
    ("data-info-missing", lambda f: ["data", "info", str(f["root"] / "missing")], 2, ["missing"]),
    ("unknown-command", lambda f: ["trian"], 2, ["trian"]),
]


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``tganv2 ARGV``; its stdout is left in ``run_cli.out``."""
    code = main(argv)  # argparse errors, --help and --version return their exit code too
    captured = capsys.readouterr()
    run_cli.out = captured.out
    return code, captured.err


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_user_error_is_one_line(case, files, capsys, monkeypatch, tmp_path):
    name, argv, expected_code, words = case
    monkeypatch.chdir(tmp_path)  # relative outputs of a case that is wrongly accepted land here
    code, err = run_cli(argv(files), capsys)
    lines = err.strip().splitlines()
    assert code == expected_code, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("tganv2: error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not list(tmp_path.iterdir()), "a refused command wrote files"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only torch")
def test_device_cuda_on_cpu_only_torch(files, capsys):
    code, err = run_cli(["train", "--out", _out(files, "cuda"), "--device", "cuda"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--device cuda" in err and ("no CUDA" in err or "CUDA support" in err)


def test_oserror_while_writing_is_one_line(files, capsys, monkeypatch, tmp_path):
    """A full disk (or any OSError) while a command writes its output is one line naming the file."""
    import errno

    import numpy as np

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "v.npz"))

    monkeypatch.setattr(np, "savez_compressed", full)
    code, err = run_cli(_generate(files, "--n", "1", "--out", str(tmp_path / "v.npz")), capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"tganv2: error: {tmp_path / 'v.npz'}: No space left on device (free some space and rerun)"
    ]


def _parsers(parser: argparse.ArgumentParser, prefix: str = "tganv2"):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prefix} {name}")


def test_every_option_has_help_with_its_default_and_every_command_a_description():
    from tganv2.arguments import HelpFormatter
    from tganv2.cli import build_parser

    missing = []
    for name, parser in _parsers(build_parser()):
        has_commands = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
        if name != "tganv2" and not has_commands and not parser.description:
            missing.append(f"{name}: no description")
        formatter = HelpFormatter(name)
        for action in parser._actions:
            if action.dest in ("help", "version") or isinstance(action, argparse._SubParsersAction):
                continue
            flag = "/".join(action.option_strings) or action.dest
            if not action.help:
                missing.append(f"{name} {flag}: no help")
            elif action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                if "default" not in formatter._get_help_string(action).lower():
                    missing.append(f"{name} {flag}: default {action.default!r} not shown")
    assert missing == []


def test_help_shows_defaults(capsys):
    code, _ = run_cli(["train", "--help"], capsys)
    text = " ".join(run_cli.out.split())
    assert code == 0
    assert "--device DEVICE auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default: auto)" in text
    code, _ = run_cli(["bench", "step", "--help"], capsys)
    text = " ".join(run_cli.out.split())
    assert "autocast precision of the forward passes (default: fp32)" in text


def test_version_prints_the_package_version():
    from tganv2 import __version__

    result = run_tganv2("--version", timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"tganv2 {__version__}"


@pytest.mark.parametrize(
    "user, expected",
    [
        ({}, ["PASSIVE", "10000"]),  # neither set: PASSIVE, and libgomp's short spin that overrides it
        ({"OMP_WAIT_POLICY": "ACTIVE"}, ["ACTIVE", "None"]),  # the user's policy, with its own spin count
        ({"OMP_WAIT_POLICY": "PASSIVE"}, ["PASSIVE", "None"]),  # a spin count would override their PASSIVE
        ({"GOMP_SPINCOUNT": "0"}, ["None", "0"]),
    ],
)
def test_the_command_sets_the_wait_policy_before_torch_loads(user, expected):
    """libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when torch loads: ``tganv2.cli`` must set them
    before any import of torch (issue 12 §8), and a user's own setting of either must win."""
    probe = (
        "import os, sys; import tganv2.cli; "
        "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run(
        [sys.executable, "-c", probe], env={**env, **user}, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", *expected]
