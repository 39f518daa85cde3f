"""Charts (matplotlib): the PNG is written at the expected size, and the figure holds the plotted values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tganv2.bench import plot
from tganv2.bench.plot import (
    BarPanel,
    BarSeries,
    Panel,
    Series,
    bar_chart,
    bar_figure,
    line_chart,
    line_figure,
)


def test_line_chart_png_and_values(tmp_path):
    panels = [
        Panel("memory", "resolution (px)", "GB", [Series("a", [64, 128, 256], [0.5, 2.0, 8.0])]),
        Panel(
            "change per frame",
            "frame",
            "L1",
            [Series("fake", [1, 2, 3], [4.0, 5.0, 3.5], yerr=[0.1, 0.2, 0.3], dashed=True)],
            log2_x=False,
            log10_y=False,
            vlines=[(16, "trained length")],
        ),
    ]
    path = line_chart(tmp_path / "sub" / "chart.png", panels, title="a title")
    with Image.open(path) as image:
        assert image.size == (2 * 560, 440 + 30) and image.format == "PNG"
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something drawn, not a blank canvas

    figure = line_figure(panels, title="a title")
    left, right = figure.axes
    np.testing.assert_array_equal(left.lines[0].get_xydata(), [[64, 0.5], [128, 2.0], [256, 8.0]])
    assert left.get_xscale() == "log" and left.get_yscale() == "log"
    assert [t.get_text() for t in left.get_xticklabels()] == ["64", "128", "256"]
    assert right.get_xscale() == "linear" and right.lines[0].get_linestyle() == "--"
    np.testing.assert_array_equal(right.lines[0].get_xydata(), [[1, 4.0], [2, 5.0], [3, 3.5]])
    (bars,) = right.collections  # the error bars: one vertical segment per point
    np.testing.assert_allclose(
        [seg[:, 1] for seg in bars.get_segments()], [[3.9, 4.1], [4.8, 5.2], [3.2, 3.8]]
    )
    assert right.lines[-1].get_xdata()[0] == 16  # the marker line
    assert figure.get_suptitle() == "a title"


def test_bar_chart_png_and_values(tmp_path):
    variants = ["tganv2", "frame-only", "batch-only", "none"]
    panel = BarPanel(
        "classifier-IS", "IS", variants, [BarSeries("ours", [2.5, 2.1, 1.8, 1.2], [0.1, 0.2, 0.1, 0.05])]
    )
    path = bar_chart(tmp_path / "bars.png", [panel, panel])
    with Image.open(path) as image:
        assert image.size == (2 * 560, 440)
    ax = bar_figure([panel]).axes[0]
    assert [p.get_height() for p in ax.patches] == [2.5, 2.1, 1.8, 1.2]
    assert [t.get_text() for t in ax.get_xticklabels()] == variants
    (errors,) = ax.collections
    np.testing.assert_allclose([seg[1, 1] - seg[0, 1] for seg in errors.get_segments()], [0.2, 0.4, 0.2, 0.1])


def test_mean_std_chart_plots_an_ablation_table(tmp_path, monkeypatch):
    table = {  # the `table` of benchmarks/ablation.py's record
        "tganv2": {"cls_is": (2.5, 0.1), "cls_fid": (170.0, 5.0)},
        "frame-only": {"cls_is": (2.1, 0.2), "cls_fid": (190.0, 9.0)},
    }
    figures = []
    real_save = plot._save
    monkeypatch.setattr(plot, "_save", lambda figure, path: figures.append(figure) or real_save(figure, path))
    path = plot.mean_std_chart(
        tmp_path / "ablation.png", table, [("cls_is", "IS", "IS"), ("cls_fid", "FID", "FID")]
    )
    with Image.open(path) as image:
        assert image.size == (2 * 560, 440)
    is_ax, fid_ax = figures[0].axes
    assert [p.get_height() for p in is_ax.patches] == [2.5, 2.1]
    assert [p.get_height() for p in fid_ax.patches] == [170.0, 190.0]
    (errors,) = fid_ax.collections
    np.testing.assert_allclose([seg[1, 1] - seg[0, 1] for seg in errors.get_segments()], [10.0, 18.0])


def test_scaling_figures_plot_the_report(tmp_path, monkeypatch):
    from tganv2.bench.scaling import growth_figure, scaling_figure

    rows = [{"resolution": r, "activation_gb": r / 64, "gflops": (r / 64) ** 2} for r in (64, 128, 256)]
    report = {
        "preset": "small-64",
        "batch": 8,
        "families": {"fixed-levels": {"preset": {"rows": rows}, "no-subsampling": {"rows": rows[:2]}}},
    }
    figures = []
    real_save = plot._save
    monkeypatch.setattr(plot, "_save", lambda figure, path: figures.append(figure) or real_save(figure, path))
    assert scaling_figure(report, tmp_path / "scaling.png").is_file()
    assert growth_figure(report, tmp_path / "growth.png").is_file()
    activation, gflops = figures[0].axes
    np.testing.assert_array_equal(activation.lines[0].get_xydata(), [[64, 1], [128, 2], [256, 4]])
    np.testing.assert_array_equal(gflops.lines[1].get_xydata(), [[64, 1], [128, 4]])
    assert [line.get_label() for line in activation.lines] == [
        "small-64 subsampling, 4 levels",
        "no subsampling, 4 levels",
    ]
    (growth,) = figures[1].axes
    np.testing.assert_array_equal(growth.lines[0].get_xydata(), [[128, 1], [256, 2]])  # GB added per doubling
    with Image.open(tmp_path / "growth.png") as image:
        assert image.size == (760, 460 + 30)


def test_missing_matplotlib_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    from tganv2.errors import UserError

    with pytest.raises(UserError, match=r"pip install 'tganv2\[plot\]'"):
        line_figure([Panel("t", "x", "y", [Series("a", [1, 2], [1, 2])])])
