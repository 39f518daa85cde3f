"""``tganv2 bench scaling``: the paper's claim that memory grows only linearly as the resolution doubles.

Paper §4.1: with frame and batch strides of 2 every rendered level has about the same size, so each extra
level (one per doubling of the resolution) adds a constant amount of memory. Without subsampling the
added level is 4× the previous one.
"""

from __future__ import annotations

import pytest

from tganv2.bench.cost import fractional_level_batches
from tganv2.bench.scaling import growth_per_doubling, scaling_configs, scaling_report
from tganv2.config import level_shapes, load_preset


def test_growth_per_doubling_of_power_laws():
    resolutions = [64, 128, 256, 512]
    assert growth_per_doubling(resolutions, [r**2 for r in resolutions]) == pytest.approx(4.0)
    assert growth_per_doubling(resolutions, [3 * r for r in resolutions]) == pytest.approx(2.0)


def _rendered_voxels(cfg) -> list[float]:
    """Fractional batch × frames × height × width of every level video in training."""
    batches = fractional_level_batches(cfg, 4)
    return [b * t * h * w for b, (_, t, h, w) in zip(batches, level_shapes(cfg, 4))]


def test_level_per_doubling_keeps_every_rendered_level_the_same_size():
    configs = scaling_configs(load_preset("ucf101-192-bsr"))
    cfg_64f = configs["level-per-doubling-64f"]["preset"][512]
    assert cfg_64f.model.n_levels == 7
    assert _rendered_voxels(cfg_64f) == [4 * 64 * 8 * 8] * 7
    # with 16-frame clips the frames run out after 4 layers; from then on each level doubles
    voxels = _rendered_voxels(configs["level-per-doubling"]["preset"][512])
    assert voxels == [4 * 16 * 8 * 8] * 5 + [2 * 4 * 16 * 8 * 8, 4 * 4 * 16 * 8 * 8]
    naive = _rendered_voxels(configs["level-per-doubling"]["no-subsampling"][512])
    assert naive == [4 * 16 * 8 * 8 * 4**k for k in range(7)]


def test_measured_memory_grows_linearly_with_subsampling_and_4x_without():
    report = scaling_report(load_preset("ucf101-192-bsr"), 4, families_wanted=("level-per-doubling-64f",))
    family = report["families"]["level-per-doubling-64f"]
    rows = family["preset"]["rows"]
    g_memory = [row["generator_activation_gb"] for row in rows]
    g_increments = [b - a for a, b in zip(g_memory, g_memory[1:])]
    # each doubling adds one up-block + renderer on an equally sized map: the same bytes every time
    assert max(g_increments) == pytest.approx(min(g_increments), rel=0.01)
    assert family["preset"]["activation_growth_per_doubling"] < 1.3
    naive = family["no-subsampling"]
    assert naive["activation_growth_per_doubling"] > 3.5
    assert [row["resolution"] for row in naive["rows"]] == [64, 128, 256, 512]
