"""Small line charts drawn with Pillow (no matplotlib): log-scaled axes, several panels, a legend.

Used by ``tganv2 bench scaling --plot`` to write the PNG in docs/. Deliberately minimal: the figures are
evidence next to tables that hold the exact numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["Series", "Panel", "line_chart"]

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]


@dataclass
class Series:
    label: str
    xs: list[float]
    ys: list[float]
    colour: tuple[int, int, int] = COLOURS[0]
    dashed: bool = False


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    log2_x: bool = True  # x ticks at the data's x values, spaced by log2
    log10_y: bool = True


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _nice_log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            if lo <= value <= hi:
                ticks.append(value)
    return ticks


def _polyline(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], colour, dashed: bool) -> None:
    if not dashed:
        draw.line(points, fill=colour, width=3)
        return
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) // 6))
        for k in range(0, n, 2):
            a, b = k / n, min(1.0, (k + 1) / n)
            draw.line((x0 + a * (x1 - x0), y0 + a * (y1 - y0), x0 + b * (x1 - x0), y0 + b * (y1 - y0)),
                      fill=colour, width=3)


def _draw_panel(draw: ImageDraw.ImageDraw, panel: Panel, box: tuple[int, int, int, int]) -> None:
    left, top, right, bottom = box
    font, small = _font(16), _font(13)
    plot_l, plot_t, plot_r, plot_b = left + 70, top + 36, right - 12, bottom - 50
    draw.text(((left + right) // 2, top + 8), panel.title, fill="black", font=font, anchor="mt")
    xs = sorted({x for s in panel.series for x in s.xs})
    ys = [y for s in panel.series for y in s.ys if y > 0]
    fx = (lambda v: math.log2(v)) if panel.log2_x else (lambda v: v)
    fy = (lambda v: math.log10(v)) if panel.log10_y else (lambda v: v)
    x_lo, x_hi = fx(min(xs)), fx(max(xs))
    y_lo, y_hi = fy(min(ys)), fy(max(ys))
    pad = 0.05 * (y_hi - y_lo or 1.0)
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def to_px(x: float, y: float) -> tuple[float, float]:
        px = plot_l + (fx(x) - x_lo) / ((x_hi - x_lo) or 1.0) * (plot_r - plot_l)
        py = plot_b - (fy(y) - y_lo) / ((y_hi - y_lo) or 1.0) * (plot_b - plot_t)
        return px, py

    draw.rectangle((plot_l, plot_t, plot_r, plot_b), outline="black")
    for x in xs:
        px, _ = to_px(x, 10**y_lo if panel.log10_y else y_lo)
        draw.line((px, plot_t, px, plot_b), fill=(228, 228, 228))
        draw.text((px, plot_b + 6), f"{x:g}", fill="black", font=small, anchor="mt")
    y_ticks = _nice_log_ticks(10**y_lo, 10**y_hi) if panel.log10_y else []
    for y in y_ticks:
        _, py = to_px(xs[0], y)
        draw.line((plot_l, py, plot_r, py), fill=(228, 228, 228))
        draw.text((plot_l - 6, py), f"{y:g}", fill="black", font=small, anchor="rm")
    draw.text(((plot_l + plot_r) // 2, bottom - 22), panel.xlabel, fill="black", font=small, anchor="mt")
    draw.text((left + 4, top + 22), panel.ylabel, fill="black", font=small, anchor="lt")
    for series in panel.series:
        points = [to_px(x, y) for x, y in zip(series.xs, series.ys) if y > 0]
        _polyline(draw, points, series.colour, series.dashed)
        for px, py in points:
            draw.ellipse((px - 4, py - 4, px + 4, py + 4), fill=series.colour)
    legend_y = plot_t + 6
    for series in panel.series:
        sample = [(plot_l + 8, legend_y + 7), (plot_l + 34, legend_y + 7)]
        _polyline(draw, sample, series.colour, series.dashed)
        draw.text((plot_l + 40, legend_y), series.label, fill="black", font=small)
        legend_y += 18


def line_chart(
    path: str | Path, panels: list[Panel], panel_size: tuple[int, int] = (560, 440), title: str = ""
) -> Path:
    """Draw ``panels`` side by side into a PNG at ``path``."""
    width, height = panel_size[0] * len(panels), panel_size[1] + (30 if title else 0)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    offset = 0
    if title:
        draw.text((width // 2, 8), title, fill="black", font=_font(17), anchor="mt")
        offset = 30
    for k, panel in enumerate(panels):
        box = (k * panel_size[0], offset, (k + 1) * panel_size[0], offset + panel_size[1])
        _draw_panel(draw, panel, box)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
