"""Charts with matplotlib (the optional extra ``tganv2[plot]``, also in ``[dev]``): lines and bars.

Every chart of the project is drawn here: ``bench scaling --plot`` (log-log lines), the mini Table 2
ablation (bars with mean ± std), the memory-capacity experiment (lines with error bars) and the long-video
statistics of ``benchmarks/long_video.py`` (lines against the frame index, a marker at the trained length).
The figures are evidence next to tables that hold the exact numbers.

``line_figure`` / ``bar_figure`` build a ``matplotlib.figure.Figure`` (no pyplot state, the Agg canvas), so
a test can read the plotted values back; ``line_chart`` / ``bar_chart`` also write it as a PNG of
``panel_size`` pixels per panel (plus 30 px for a title).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

__all__ = [
    "COLOURS",
    "Series",
    "Panel",
    "BarSeries",
    "BarPanel",
    "line_figure",
    "line_chart",
    "bar_figure",
    "bar_chart",
    "mean_std_chart",
]

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]
DPI = 100
TITLE_PX = 30


@dataclass
class Series:
    label: str
    xs: list[float]
    ys: list[float]
    colour: tuple[int, int, int] = COLOURS[0]  # RGB 0-255
    dashed: bool = False
    yerr: list[float] | None = None  # error bars (e.g. the std over seeds)


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    log2_x: bool = True  # log2 x axis with ticks at the data's x values
    log10_y: bool = True  # log10 y axis
    vlines: list[tuple[float, str]] = field(default_factory=list)  # (x, label) dotted markers


@dataclass
class BarSeries:
    label: str
    values: list[float]  # one per category
    errors: list[float] | None = None  # error bars, one per category
    colour: tuple[int, int, int] = COLOURS[0]


@dataclass
class BarPanel:
    title: str
    ylabel: str
    categories: list[str]  # the groups along x (e.g. the ablation variants)
    series: list[BarSeries] = field(default_factory=list)  # bars side by side in each group


def _new_figure(n_panels: int, panel_size: tuple[int, int], title: str):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("charts need matplotlib: pip install 'tganv2[plot]'") from None
    width, height = panel_size[0] * n_panels, panel_size[1] + (TITLE_PX if title else 0)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, n_panels, squeeze=False)[0]
    if title:
        figure.suptitle(title, fontsize=11)
    return figure, list(axes)


def _rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    return tuple(c / 255 for c in colour)


def _draw_lines(ax, panel: Panel) -> None:
    for series in panel.series:
        style = dict(color=_rgb(series.colour), linestyle="--" if series.dashed else "-", marker="o", ms=4)
        if series.yerr is not None:
            ax.errorbar(series.xs, series.ys, yerr=series.yerr, capsize=3, label=series.label, **style)
        else:
            ax.plot(series.xs, series.ys, label=series.label, **style)
    for x, label in panel.vlines:
        ax.axvline(x, color="grey", linestyle=":", linewidth=1.2, label=label)
    if panel.log2_x:
        xs = sorted({x for s in panel.series for x in s.xs})
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
    if panel.log10_y:
        ax.set_yscale("log")
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    ax.grid(True, which="major", color="0.9")
    ax.legend(fontsize=8)


def line_figure(panels: list[Panel], panel_size: tuple[int, int] = (560, 440), title: str = ""):
    """The ``matplotlib.figure.Figure`` of ``panels`` side by side."""
    figure, axes = _new_figure(len(panels), panel_size, title)
    for ax, panel in zip(axes, panels):
        _draw_lines(ax, panel)
    return figure


def bar_figure(panels: list[BarPanel], panel_size: tuple[int, int] = (560, 440), title: str = ""):
    """Grouped bars (one group per category, one bar per series) with optional error bars."""
    figure, axes = _new_figure(len(panels), panel_size, title)
    for ax, panel in zip(axes, panels):
        width = 0.8 / max(1, len(panel.series))
        for k, series in enumerate(panel.series):
            xs = [i + (k - (len(panel.series) - 1) / 2) * width for i in range(len(panel.categories))]
            ax.bar(
                xs,
                series.values,
                width,
                yerr=series.errors,
                capsize=3,
                color=_rgb(series.colour),
                label=series.label,
            )
        ax.set_xticks(range(len(panel.categories)), panel.categories)
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, axis="y", color="0.9")
        ax.set_axisbelow(True)
        if len(panel.series) > 1:
            ax.legend(fontsize=8)
    return figure


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def line_chart(
    path: str | Path, panels: list[Panel], panel_size: tuple[int, int] = (560, 440), title: str = ""
) -> Path:
    """Draw ``panels`` side by side into a PNG at ``path``."""
    return _save(line_figure(panels, panel_size, title), path)


def bar_chart(
    path: str | Path, panels: list[BarPanel], panel_size: tuple[int, int] = (560, 440), title: str = ""
) -> Path:
    """Draw bar ``panels`` side by side into a PNG at ``path``."""
    return _save(bar_figure(panels, panel_size, title), path)


def mean_std_chart(
    path: str | Path,
    table: dict[str, dict[str, tuple[float, float]]],  # {category: {metric: (mean, std)}}
    metrics: list[tuple[str, str, str]],  # (metric key, panel title, y label), one panel each
    title: str = "",
) -> Path:
    """One bar panel per metric, a bar per category with its ± std error bar (e.g. the ablation table of
    ``benchmarks/ablation.py``: ``table[variant]["cls_is"] = (mean, std)``)."""
    categories = list(table)
    panels = []
    for key, panel_title, ylabel in metrics:
        means = [table[c][key][0] for c in categories]
        stds = [table[c][key][1] for c in categories]
        panels.append(BarPanel(panel_title, ylabel, categories, [BarSeries("mean ± std", means, stds)]))
    return bar_chart(path, panels, title=title)
