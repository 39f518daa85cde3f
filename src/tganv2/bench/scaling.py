"""Activation memory and FLOPs against the final resolution (``tganv2 bench scaling``; paper §4.1).

The paper's claim: with frame and batch strides of 2, "the dimensionality of the four rendered videos is
almost equivalent ... the total amount of consumed memory increases only linearly, even if the resolution
of the generated video is doubled". Two ways to grow the resolution are measured, each for the preset's
subsampling (variant ``preset``) and for the ``no-subsampling`` ablation (``config.ablation_overrides``),
with the meta-device counters of ``cost``:

* ``fixed-levels``: the official model, 4 levels, final size t_size·64 for t_size 1…8 (64…512 px). Every
  level's area grows with the final area, so both variants grow ~4× per doubling: not what the claim is
  about, but what the official code does when t_size is raised.
* ``level-per-doubling``: t_size 1 (level 1 at 8 px) and one more level (up-block + renderer +
  sub-discriminator) per doubling: 4 levels at 64 px … 7 at 512 px. Frame stride 2 while frames remain
  (16 → 8 → 4 → 2 → 1, then stride 1), batch stride as the preset's. This is the paper's construction;
  with 16 frames the frame axis runs out after 4 layers, so from the 6th level on only the batch halves.
* ``level-per-doubling-64f``: the same with 64-frame clips, so every layer up to 512 px halves both the
  frames and the batch: the setting in which the claim is exact.

Costs are G + D forward at the given level-1 batch with fractional per-level batches (as the official
cost table), so the batch-reduced levels are not rounded up to one sample.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..config import PRESET_VARIANT, Config, ablation_overrides, apply_overrides
from ..nn.subsample import batch_reductions, kept_frames
from .cost import discriminator_cost, generator_cost
from .plot import COLOURS, Panel, Series, line_chart

__all__ = [
    "RESOLUTIONS",
    "scaling_configs",
    "scaling_report",
    "growth_per_doubling",
    "scaling_figure",
    "growth_figure",
]

RESOLUTIONS = [64 * t for t in range(1, 9)]  # t_size 1..8
DOUBLING_RESOLUTIONS = [64, 128, 256, 512]


def _level_per_doubling_overrides(cfg: Config, resolution: int, subsample: bool, n_frames: int) -> dict:
    """t_size 1 and log2(resolution / 8) subsampling layers, with strides continuing the preset's."""
    n_layers = int(math.log2(resolution // 8))  # 64 px: 3 layers (4 levels), 512 px: 6 layers (7 levels)
    strides = ablation_overrides("no-subsampling", n_layers)
    if subsample:
        frames, frame_strides = n_frames, []
        for _ in range(n_layers):
            stride = 2 if frames % 2 == 0 else 1  # strides must split the frames evenly
            frame_strides.append(stride)
            frames = kept_frames(frames, stride)
        batch_strides = [max(cfg.model.batch_strides)] * n_layers
        strides = {"model.frame_strides": frame_strides, "model.batch_strides": batch_strides}
    return {
        "model.t_size": 1,
        "model.n_frames": n_frames,
        **strides,
        "model.crop_factors": [1] * n_layers,
        "model.render_level": n_layers + 1,
        "train.batch": batch_reductions(strides["model.batch_strides"])[-1],  # validates; batch passed apart
    }


def scaling_configs(cfg: Config) -> dict[str, dict[str, dict[int, Config]]]:
    """``{family: {variant: {resolution: Config}}}`` for the three families and two variants."""
    naive = ablation_overrides("no-subsampling", len(cfg.model.frame_strides))
    reduction = batch_reductions(cfg.model.batch_strides)[-1]
    fixed_batch = {"train.batch": reduction}
    fixed = {
        PRESET_VARIANT: {
            r: apply_overrides(cfg, {"model.t_size": r // 64, **fixed_batch}) for r in RESOLUTIONS
        },
        "no-subsampling": {
            r: apply_overrides(cfg, {"model.t_size": r // 64, **naive, **fixed_batch}) for r in RESOLUTIONS
        },
    }
    families = {"fixed-levels": fixed}
    for family, n_frames in (("level-per-doubling", cfg.model.n_frames), ("level-per-doubling-64f", 64)):
        families[family] = {
            name: {
                r: apply_overrides(cfg, _level_per_doubling_overrides(cfg, r, subsample, n_frames))
                for r in DOUBLING_RESOLUTIONS
            }
            for name, subsample in ((PRESET_VARIANT, True), ("no-subsampling", False))
        }
    return families


def growth_per_doubling(resolutions: list[int], values: list[float]) -> float:
    """2^slope of the least-squares line through (log2 resolution, log2 value): the factor per doubling."""
    xs = [math.log2(r) for r in resolutions]
    ys = [math.log2(v) for v in values]
    x_mean, y_mean = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sum((x - x_mean) ** 2 for x in xs)
    return 2.0**slope


def _increments_per_doubling(rows: list[dict], key: str) -> list[float]:
    by_resolution = {row["resolution"]: row[key] for row in rows}
    return [by_resolution[2 * r] - v for r, v in by_resolution.items() if 2 * r in by_resolution]


def scaling_report(cfg: Config, batch: int = 4, families_wanted: tuple[str, ...] | None = None) -> dict:
    """Per family and variant: resolution → levels, activation GB and GFLOPs of G and D (forward)."""
    families: dict = {}
    for family, variants in scaling_configs(cfg).items():
        if families_wanted is not None and family not in families_wanted:
            continue
        families[family] = {}
        for name, by_resolution in variants.items():
            rows = []
            for resolution, variant in by_resolution.items():
                g = generator_cost(variant, batch, official_conventions=True)
                d = discriminator_cost(variant, batch, official_conventions=True)
                rows.append(
                    {
                        "resolution": resolution,
                        "levels": variant.model.n_levels,
                        "t_size": variant.model.t_size,
                        "frame_strides": list(variant.model.frame_strides),
                        "batch_strides": list(variant.model.batch_strides),
                        "generator_activation_gb": sum(g["activation_gb"]),
                        "discriminator_activation_gb": sum(d["activation_gb"]),
                        "activation_gb": sum(g["activation_gb"]) + sum(d["activation_gb"]),
                        "generator_gflops": sum(g["forward_gflops_executed"]),
                        "discriminator_gflops": sum(d["forward_gflops"]),
                        "gflops": sum(g["forward_gflops_executed"]) + sum(d["forward_gflops"]),
                        "last_level_activation_gb": g["activation_gb"][-1] + d["activation_gb"][-1],
                    }
                )
            resolutions = [row["resolution"] for row in rows]
            families[family][name] = {
                "rows": rows,
                "activation_growth_per_doubling": growth_per_doubling(
                    resolutions, [row["activation_gb"] for row in rows]
                ),
                "gflops_growth_per_doubling": growth_per_doubling(
                    resolutions, [row["gflops"] for row in rows]
                ),
                # memory added by each doubling (constant = linear in the number of levels)
                "activation_increment_gb": _increments_per_doubling(rows, "activation_gb"),
            }
    return {"preset": cfg.preset, "batch": batch, "fractional_batch": True, "families": families}


FAMILY_LABELS = {
    "fixed-levels": "4 levels",
    "level-per-doubling": "level/doubling",
    "level-per-doubling-64f": "level/doubling, 64 fr",
}


def _variant_label(report: dict, name: str) -> str:
    return f"{report['preset']} subsampling" if name == PRESET_VARIANT else "no subsampling"


def scaling_figure(report: dict, path: str | Path) -> Path:
    """Two log-log panels (activation GB, forward GFLOPs of G + D) against the final resolution."""
    panels = [
        Panel("saved activations, G + D forward", "final resolution (px)", "GB"),
        Panel("forward GFLOPs, G + D", "final resolution (px)", "GFLOPs"),
    ]
    for colour, (family, variants) in zip(COLOURS, report["families"].items()):
        for name, result in variants.items():
            rows = result["rows"]
            variant_label = _variant_label(report, name)
            label = f"{variant_label}, {FAMILY_LABELS.get(family, family)}"
            xs = [row["resolution"] for row in rows]
            for panel, key in zip(panels, ("activation_gb", "gflops")):
                panel.series.append(
                    Series(label, xs, [row[key] for row in rows], colour, name != PRESET_VARIANT)
                )
    title = (
        f"preset {report['preset']}, batch {report['batch']} (fractional per level); dashed: no subsampling"
    )
    return line_chart(path, panels, title=title)


def growth_figure(report: dict, path: str | Path) -> Path:
    """Activation GB added by each doubling of the resolution (constant = linear growth in the levels)."""
    panel = Panel("GB of saved activations added per doubling", "resolution reached (px)", "GB added")
    for colour, (family, variants) in zip(COLOURS, report["families"].items()):
        for name, result in variants.items():
            by_resolution = {row["resolution"]: row["activation_gb"] for row in result["rows"]}
            xs = [r for r in sorted(by_resolution) if r // 2 in by_resolution]
            ys = [by_resolution[r] - by_resolution[r // 2] for r in xs]
            variant_label = _variant_label(report, name)
            label = f"{variant_label}, {FAMILY_LABELS.get(family, family)}"
            panel.series.append(Series(label, xs, ys, colour, name != PRESET_VARIANT))
    title = f"preset {report['preset']}, batch {report['batch']}: flat = memory linear in the levels"
    return line_chart(path, [panel], panel_size=(760, 460), title=title)
