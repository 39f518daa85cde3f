"""``tganv2 summary``: the reference's parameter counts and shapes, from the real modules on meta."""

from __future__ import annotations

import functools
import json

import pytest

from tganv2.cli import main
from tganv2.config import PRESETS, level_shapes, load_preset
from tganv2.summary import model_summary

# reference §2.1, per level: (C, T, H, W) after each block (including the length-3 quirk)
UCF101_BLOCK_SHAPES = [
    [[64, 16, 12, 12], [128, 8, 6, 6], [256, 4, 3, 3], [512, 2, 2, 2], [1024, 1, 1, 1]],
    [[64, 8, 24, 24], [128, 4, 12, 12], [256, 2, 6, 6], [512, 1, 3, 3], [1024, 3, 2, 2]],
    [[64, 4, 48, 48], [128, 2, 24, 24], [256, 1, 12, 12], [512, 3, 6, 6], [1024, 2, 3, 3]],
    [[64, 2, 96, 96], [128, 1, 48, 48], [256, 3, 24, 24], [512, 2, 12, 12], [1024, 1, 6, 6]],
]


@functools.cache
def _summary(preset: str, batch: int | None = None) -> dict:
    """model_summary of a preset, computed once per (preset, batch) for the whole module."""
    return model_summary(load_preset(preset), batch)


@pytest.fixture(scope="module")
def ucf101_json():
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["summary", "--preset", "ucf101-192", "--json"])
    assert code == 0
    return json.loads(out.getvalue())


def test_cli_json_parameter_counts(ucf101_json):
    assert ucf101_json["preset"] == "ucf101-192"
    assert ucf101_json["generator"]["parameters"] == 88_032_460
    assert ucf101_json["generator"]["fc"] == 2_368_512
    assert ucf101_json["discriminator"]["parameters"] == 116_077_060
    assert ucf101_json["discriminator"]["per_level"] == [29_019_265] * 4


def test_cli_json_level_and_block_shapes(ucf101_json):
    assert ucf101_json["batch"] == 32
    assert ucf101_json["train_levels"] == [
        [32, 16, 24, 24],
        [32, 8, 48, 48],
        [32, 4, 96, 96],
        [32, 2, 192, 192],
    ]
    assert ucf101_json["discriminator"]["block_shapes"] == UCF101_BLOCK_SHAPES
    assert ucf101_json["inference"] == {"render_level": 4, "shape": [1, 3, 16, 192, 192]}


def test_cli_batch_option_and_render_level_override(capsys):
    assert main(["summary", "--preset", "ucf101-192", "--json", "--batch", "2", "model.render_level=2"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [lvl[0] for lvl in info["train_levels"]] == [2, 2, 2, 2]
    assert info["inference"] == {"render_level": 2, "shape": [1, 3, 16, 48, 48]}


def test_cli_table_output(capsys):
    assert main(["summary", "--preset", "ucf101-192"]) == 0
    out = capsys.readouterr().out
    assert "88,032,460" in out and "116,077,060" in out and "29,019,265" in out  # G, D and D per level


@pytest.mark.parametrize(
    "preset, levels, inference",
    [
        ("faceforensics-256", [(16, 16, 32, 32), (8, 8, 64, 64), (4, 4, 128, 128), (2, 2, 256, 256)], 256),
        ("ucf101-192-bsr", [(32, 16, 24, 24), (16, 8, 48, 48), (8, 4, 96, 96), (4, 2, 192, 192)], 192),
        ("ucf101-192", [(32, 16, 24, 24), (32, 8, 48, 48), (32, 4, 96, 96), (32, 2, 192, 192)], 192),
        ("batch-only", [(32, 16, 24, 24), (16, 16, 48, 48), (8, 16, 96, 96), (4, 16, 192, 192)], 192),
        ("no-subsampling", [(32, 16, 24, 24), (32, 16, 48, 48), (32, 16, 96, 96), (32, 16, 192, 192)], 192),
    ],
)
def test_other_presets(preset, levels, inference):
    info = _summary(preset)
    assert [tuple(v) for v in info["train_levels"]] == levels
    assert info["inference"]["shape"] == [1, 3, 16, inference, inference]
    assert info["discriminator"]["parameters"] == 116_077_060


def test_faceforensics_block_shapes():
    shapes = _summary("faceforensics-256")["discriminator"]["block_shapes"]
    assert shapes[0][-1] == [1024, 1, 1, 1]
    assert shapes[1][-1] == [1024, 3, 2, 2]  # length-1 time axis padded to 3 in the last block
    assert shapes[3] == [
        [64, 2, 128, 128],
        [128, 1, 64, 64],
        [256, 3, 32, 32],
        [512, 2, 16, 16],
        [1024, 1, 8, 8],
    ]


def test_no_subsampling_keeps_16_frames_in_every_discriminator_level():
    shapes = _summary("no-subsampling")["discriminator"]["block_shapes"]
    for level in shapes:
        assert [b[1] for b in level] == [16, 8, 4, 2, 1]


@pytest.mark.parametrize("name", list(PRESETS))
def test_level_shapes_agree_with_the_model(name):
    cfg = load_preset(name)
    for batch in (None, 8) if name == "ucf101-192-bsr" else (None,):
        info = _summary(name, batch)
        assert [tuple(v) for v in info["train_levels"]] == level_shapes(cfg, batch)


def test_level_shapes_with_crop_factors_agree_with_the_model():
    cfg = load_preset("ucf101-192", ["model.crop_factors=[2, 2, 1]"])
    info = model_summary(cfg, 2)
    assert [tuple(v) for v in info["train_levels"]] == level_shapes(cfg, 2)
    assert level_shapes(cfg, 2) == [(2, 16, 24, 24), (2, 8, 24, 24), (2, 4, 24, 24), (2, 2, 48, 48)]


@pytest.mark.parametrize("batch", ["0", "-3"])
def test_bad_batch_is_one_line(batch, capsys):
    assert main(["summary", "--preset", "small-64", "--batch", batch]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"tganv2: error: --batch must be >= 1, got {batch}"]
