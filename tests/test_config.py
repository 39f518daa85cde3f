"""Config: presets, dotted overrides, YAML files in order, one-line errors (reference §1.1, §4.3)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tganv2.cli import main
from tganv2.config import (
    PRESETS,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    level_shapes,
    load_config,
    load_preset,
)
from tganv2.errors import UserError


def test_default_preset_is_the_official_readme_run():
    cfg = load_preset("ucf101-192")
    m, t = cfg.model, cfg.train
    assert (m.n_frames, m.z_dim, m.t_size, m.ch, m.clstm_ch, m.n_layers) == (16, 256, 3, 32, 1024, 1)
    assert m.frame_strides == [2, 2, 2] and m.batch_strides == [1, 1, 1] and m.render_level == 4
    assert m.bn_eps == 2e-5 and m.d_ch == 64 and m.n_levels == 4 and m.resolution == 192
    assert (t.batch, t.iterations, t.lr, t.betas, t.adam_eps) == (32, 100_000, 1e-4, (0.0, 0.9), 8e-8)
    assert (t.n_dis, t.r1_lambda, t.r1_reference_batch, t.seed) == (1, 0.5, 32, 1701)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_loads_and_round_trips(name):
    cfg = load_preset(name)
    assert cfg.preset == name
    assert config_from_dict(config_to_dict(cfg)) == cfg
    # the data are opened at model.resolution: the last level's side, or a crop of it (demo-64)
    height, width = level_shapes(cfg)[-1][2:]
    crop = math.prod(cfg.model.crop_factors)
    assert (height * crop, width * crop) == (cfg.model.resolution, cfg.model.resolution)
    assert cfg.model.render_size() == cfg.model.resolution


def test_resolution_follows_the_number_of_levels():
    strides = {"model.frame_strides": [2, 2], "model.batch_strides": [1, 1], "model.crop_factors": [1, 1]}
    three = apply_overrides(load_preset("ucf101-192"), {**strides, "model.render_level": 3})
    assert three.model.resolution == 96  # 24 → 48 → 96 px
    assert [shape[2] for shape in level_shapes(three)] == [24, 48, 96]


def test_render_size_of_each_level():
    ucf, demo = load_preset("ucf101-192").model, load_preset("demo-64").model
    assert [ucf.render_size(level) for level in range(1, 5)] == [24, 48, 96, 192]
    assert ucf.render_size() == ucf.resolution == 192  # default: the render level (4)
    assert [demo.render_size(level) for level in range(1, 4)] == [16, 32, 64] and demo.resolution == 64
    # crops shrink the training levels, not what inference renders
    cropped = load_preset("ucf101-192", ["model.crop_factors=[2, 2, 1]"]).model
    assert cropped.level_sizes == [24, 24, 24, 48] and cropped.render_size(4) == 192


def test_preset_specifics():
    assert load_preset("ucf101-192-bsr").model.batch_strides == [2, 2, 2]
    ff = load_preset("faceforensics-256")
    assert (ff.model.t_size, ff.model.resolution, ff.train.batch, ff.model.batch_strides) == (
        4,
        256,
        16,
        [2, 2, 2],
    )
    assert load_preset("no-subsampling").model.frame_strides == [1, 1, 1]
    assert load_preset("batch-only").model.frame_strides == [1, 1, 1]
    assert load_preset("small-64").model.resolution == 64
    # the demo: 3 levels of 16/8/4 frames at 16/32 px and 32 px crops of the 64 px frames, batch 8 at each
    demo = load_preset("demo-64")
    assert demo.model.resolution == 64 and demo.model.render_level == 3
    assert level_shapes(demo) == [(8, 16, 16, 16), (8, 8, 32, 32), (8, 4, 32, 32)]
    # StyleGAN's minibatch std in the demo's D only; every paper preset keeps the official D
    assert demo.model.d_mbstd_group == 4
    assert all(load_preset(name).model.d_mbstd_group == 0 for name in PRESETS if name != "demo-64")


def test_dotted_overrides_are_parsed_as_yaml_and_coerced():
    cfg = load_preset(
        "ucf101-192",
        [
            "train.batch=16",
            "train.lr=3e-4",
            "model.frame_strides=[1, 2, 2]",
            "data.xflip=false",
            "train.betas=[0.5, 0.99]",
        ],
    )
    assert cfg.train.batch == 16 and cfg.train.lr == pytest.approx(3e-4)  # YAML reads "3e-4" as a string
    assert cfg.model.frame_strides == [1, 2, 2] and cfg.data.xflip is False
    assert cfg.train.betas == (0.5, 0.99)
    assert load_preset("ucf101-192").train.batch == 32  # presets are not mutated
    assert apply_overrides(cfg, {"model.n_layers": 3}).model.n_layers == 3 and cfg.model.n_layers == 1


def test_later_overrides_win():
    assert load_preset("ucf101-192", ["train.batch=16", "train.batch=8"]).train.batch == 8


def test_yaml_files_then_overrides_in_order(tmp_path):
    first = tmp_path / "a.yml"
    first.write_text("model:\n  n_layers: 2\n  clstm_ch: 512\ntrain:\n  batch: 16\n")
    second = tmp_path / "b.yml"
    second.write_text("train.batch: 8\nmodel:\n  n_layers: 3\n")
    cfg = load_config("ucf101-192", [first, second], ["train.lr=2e-4"])
    assert (cfg.model.n_layers, cfg.model.clstm_ch, cfg.train.batch, cfg.train.lr) == (3, 512, 8, 2e-4)
    cfg = load_config("ucf101-192", [first, second], ["train.batch=4"])
    assert cfg.train.batch == 4
    switch = tmp_path / "preset.yml"
    switch.write_text("preset: faceforensics-256\ntrain:\n  batch: 8\n")
    cfg = load_config(None, [switch])
    assert cfg.preset == "faceforensics-256" and cfg.model.t_size == 4 and cfg.train.batch == 8


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.nope=1", "model.nope"),
        ("nope.batch=1", "nope.batch"),
        ("batch=3", "'batch'"),
        ("train.batch", "key=value"),
        ("train.batch=abc", "train.batch"),
        ("train.batch=1.5", "train.batch"),
        ("train.batch=null", "train.batch"),
        ("train.batch=true", "train.batch"),
        ("model.use_avg_pooling=maybe", "model.use_avg_pooling"),
        ("model.frame_strides=2", "model.frame_strides"),
        ("train.betas=[0.5]", "train.betas"),
        ("model.render_level=5", "render_level"),
        ("model.frame_strides=[2, 2]", "same length"),
        ("model.batch_strides=[2, 2, 2]", "divisible"),
        ("train.precision=fp8", "train.precision"),
    ],
)
def test_bad_keys_and_values_raise_one_line_config_errors(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_preset("ucf101-192", ["train.batch=12", override] if "divisible" in fragment else [override])
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


def test_unknown_preset_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_preset("nope")
    with pytest.raises(ConfigError, match="not found"):
        load_config(None, [tmp_path / "missing.yml"])
    bad = tmp_path / "bad.yml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, [bad])
    wrong_key = tmp_path / "wrong.yml"
    wrong_key.write_text("model:\n  n_layer: 2\n")
    with pytest.raises(ConfigError, match="model.n_layer"):
        load_config(None, [wrong_key])
    with pytest.raises(ConfigError, match="unknown config section 'foo'"):
        config_from_dict({"foo": {}})


def test_optional_path_accepts_null():
    cfg = load_preset("small-64", ["data.path=/tmp/x.h5"])
    assert cfg.data.path == "/tmp/x.h5"
    assert apply_overrides(cfg, ["data.path=null"]).data.path is None


def test_cli_bad_key_is_one_line_on_stderr(capsys):
    code = main(["summary", "--preset", "small-64", "model.nope=1"])
    captured = capsys.readouterr()
    assert code != 0 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tganv2: error:") and "model.nope" in lines[0]


def test_cli_subprocess_bad_key_exits_nonzero_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from tganv2.cli import main; sys.exit(main())", "summary",
         "--preset", "small-64", "train.batch=abc"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "tganv2: error: config key 'train.batch' expects int, got 'abc'"
    ]


# Issue 12 §5, the model.* cases: each is refused with one line naming the field, before any work is done.
MODEL_CASES = [
    (["model.n_frames=4"], "model.n_frames=4 does not split evenly over model.frame_strides=[2, 2, 2]"),
    (["model.n_frames=12"], "e.g. model.n_frames=16"),
    (["model.frame_strides=[3, 3, 3]"], "model.frame_strides=[3, 3, 3] (fakes and reals"),
    (["model.frame_strides=[3, 3, 3]"], "e.g. model.n_frames=27"),
    (["model.n_frames=0"], "model.n_frames must be >= 1, got 0"),
    (["model.clstm_kernel=2"], "model.clstm_kernel must be odd"),
    (["model.clstm_kernel=0"], "model.clstm_kernel must be >= 1"),
    (["model.z_dim=0"], "model.z_dim must be >= 1, got 0"),
    (["model.ch=-1"], "model.ch must be >= 1, got -1"),
    (["model.clstm_ch=0"], "model.clstm_ch must be >= 1"),
    (["model.d_ch=0"], "model.d_ch must be >= 1"),
    (["model.t_size=0"], "model.t_size must be >= 1"),
    (["model.n_layers=0"], "model.n_layers must be >= 1"),
    (["model.out_channels=0"], "model.out_channels must be >= 1"),
    (["model.n_classes=-1"], "model.n_classes must be >= 0"),
    (["model.bn_eps=0"], "model.bn_eps must be a finite number > 0"),
    (["model.bn_eps=.nan"], "model.bn_eps must be a finite number > 0"),
    (["model.upsample=bicubic"], "model.upsample must be nearest or bilinear, got 'bicubic'"),
    (["model.clstm_forget_bias=.inf"], "model.clstm_forget_bias must be finite"),
    (["model.frame_strides=[0, 2, 2]"], "model.frame_strides must all be >= 1, got [0, 2, 2]"),
    (["model.batch_strides=[1, -2, 1]"], "model.batch_strides must all be >= 1"),
    (["model.crop_factors=[0, 1, 1]"], "model.crop_factors must all be >= 1"),
    (["model.crop_factors=[16, 1, 1]"], "model.crop_factors[0]=16 is larger than level 1's side of 8 px"),
    (["model.batch_strides=[2, 2]"], "must have the same length (got 3, 2, 3)"),
    (["model.crop_factors=[1, 1, 1, 1]"], "must have the same length (got 3, 3, 4)"),
    (["model.render_level=0"], "model.render_level must be in 1..4, got 0"),
    (["model.n_frames=1", "model.frame_strides=[1, 1, 1]", "train.batch=1"], "BatchNorm"),
]


@pytest.mark.parametrize("overrides, fragment", MODEL_CASES)
def test_cli_refuses_bad_model_values_with_one_line(overrides, fragment, capsys, tmp_path):
    code = main(["train", "--preset", "small-64", "--out", str(tmp_path / "run"), *overrides])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("tganv2: error: ") and fragment in lines[0]
    assert not (tmp_path / "run").exists()  # refused before anything was written
