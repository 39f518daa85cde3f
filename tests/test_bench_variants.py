"""The Table 1 variants of any preset (issue 11 §2): derived from the preset's own number of layers.

The expected strides are written out here, not taken from ``tganv2.config.ABLATIONS``.
"""

from __future__ import annotations

import pytest

from tganv2.cli import main
from tganv2.config import PRESETS, VARIANTS, ConfigError, load_preset, variant_config

EXPECTED = {  # variant -> (frame stride, batch stride) at every layer; None: the preset's own
    "preset": None,
    "frame+batch": (2, 2),
    "frame-only": (2, 1),
    "batch-only": (1, 2),
    "no-subsampling": (1, 1),
}


def test_the_variants_are_the_preset_and_the_four_table_1_models():
    assert list(VARIANTS) == list(EXPECTED)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_variant_of_every_preset_uses_the_presets_number_of_layers(preset):
    cfg = load_preset(preset)
    n = len(cfg.model.frame_strides)
    for name, strides in EXPECTED.items():
        variant = variant_config(cfg, name)
        if strides is None:
            assert variant is cfg
            continue
        frame, batch = strides
        assert variant.model.frame_strides == [frame] * n, (preset, name)
        assert variant.model.batch_strides == [batch] * n, (preset, name)
        # everything else is the preset's: only the strides change
        assert variant.model.crop_factors == cfg.model.crop_factors
        assert variant.model.t_size == cfg.model.t_size and variant.train == cfg.train


def test_demo_64_ablations_have_two_layers():
    cfg = variant_config(load_preset("demo-64"), "frame-only")
    assert cfg.model.frame_strides == [2, 2] and cfg.model.batch_strides == [1, 1]
    assert cfg.model.n_levels == 3


def test_removed_frame_only_preset_names_its_replacement(capsys):
    with pytest.raises(ConfigError, match="ucf101-192"):
        load_preset("frame-only")
    assert main(["summary", "--preset", "frame-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tganv2: error: preset 'frame-only' was removed") and "\n" not in err


def test_bench_step_variant_choices_come_from_the_registry(capsys):
    assert main(["bench", "step", "--variants", "tganv2"]) == 2  # the old name of the preset as given
    err = capsys.readouterr().err
    assert "invalid choice: 'tganv2'" in err and all(f"'{name}'" in err for name in VARIANTS)
