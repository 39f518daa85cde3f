"""Longer than trained (paper supplementary C): does a generator trained on 16 frames stay stable at 64?

For a snapshot (the demo model), generate ``--n`` videos of ``--frames`` frames at the render level (eval
mode, the same z as ``tganv2 evaluate``; a conditional generator class-balanced) and measure, per frame
index t, the learning statistics of ``tganv2.training.samples``:

* frame-to-frame change: mean |x_t − x_{t−1}| in 0–255 units over the videos (t ≥ 1);
* colour-histogram distance: L1 between the per-channel 16-bin histograms of frame t (over the videos)
  and of the real clips (all frames), 0 = same, 2 = disjoint.

The same numbers for ``--n`` real clips of the same length (synthetic data renders any length) give the
reference curves: the real per-frame histogram distance is the noise floor of N videos. The summary
compares frames up to the trained length with the frames after it. Writes a JSON record and a PNG chart:

    .venv/bin/python benchmarks/long_video.py --checkpoint runs/demo-64 --out docs/long_video
        → docs/long_video.json, docs/long_video.png
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import statistics
import sys
from pathlib import Path

import torch

from tganv2.bench.plot import COLOURS, Panel, Series, line_chart
from tganv2.data import open_dataset, to_float
from tganv2.metrics.evaluate import generate_videos
from tganv2.metrics.record import sha256_file
from tganv2.snapshot import load_snapshot
from tganv2.training.samples import histogram_distance, video_statistics


def per_frame_statistics(videos: torch.Tensor, reference_histogram: torch.Tensor) -> dict[str, list[float]]:
    """``videos (N, C, T, H, W)`` in [−1, 1] → per frame index: change from the previous frame (None at
    t = 0) and the histogram distance of frame t to ``reference_histogram`` ``(C, bins)``."""
    change = [None] + [
        video_statistics(videos[:, :, t - 1 : t + 1])["motion"] for t in range(1, videos.shape[2])
    ]
    distance = [
        histogram_distance(video_statistics(videos[:, :, t : t + 1])["histogram"], reference_histogram)
        for t in range(videos.shape[2])
    ]
    return {"frame_change": change, "hist_l1": distance}


def _window_mean(values: list[float | None], start: int, stop: int) -> float:
    return statistics.fmean(v for v in values[start:stop] if v is not None)


def summarise(stats: dict[str, list], trained: int) -> dict[str, dict[str, float]]:
    """Mean of each statistic over frames [0, trained) and [trained, T), and their ratio (after / before)."""
    out = {}
    for key, values in stats.items():
        before, after = _window_mean(values, 0, trained), _window_mean(values, trained, len(values))
        out[key] = {"within_trained": before, "beyond_trained": after, "ratio": after / before}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", required=True, help="snapshot .safetensors, checkpoint .pt or run dir"
    )
    parser.add_argument("--weights", choices=["raw", "ema"], default=None, help="default: EMA where kept")
    parser.add_argument("--out", required=True, help="output stem: writes STEM.json and STEM.png")
    parser.add_argument("--frames", type=int, default=64, help="generated frames (default 64)")
    parser.add_argument("--n", type=int, default=64, help="videos (default 64)")
    parser.add_argument("--batch", type=int, default=16, help="videos per forward pass (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of z and of the real clips (default 0)")
    parser.add_argument("--data", default="synthetic", help="real data for the reference (default synthetic)")
    parser.add_argument("--real-frames", type=int, default=None, help="real clip length (default --frames)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "generator.safetensors"
    loaded = load_snapshot(path, args.device, args.weights)
    model_cfg = loaded.config.model
    size = model_cfg.render_size()

    real_frames = args.real_frames or args.frames
    dataset = open_dataset(
        None if args.data == "synthetic" else args.data,
        n_frames=real_frames,
        size=size,
        train=False,
        seed=args.seed,
        n_clips=max(args.n, 9),
    )
    n_real = min(args.n, len(dataset))
    real = to_float(torch.stack([dataset[(i, 0)][0] for i in range(n_real)]))  # (n_real, C, T, H, W)
    real_histogram = video_statistics(real)["histogram"]  # all frames of all real clips
    fake = torch.cat(list(generate_videos(loaded.model, args.n, args.batch, args.seed, args.frames))).cpu()

    fake_stats = per_frame_statistics(fake, real_histogram)
    real_stats = per_frame_statistics(real, real_histogram)
    trained = model_cfg.n_frames
    record = {
        "benchmark": "long_video",
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "checkpoint": str(path),
        "checkpoint_sha256": sha256_file(path),
        "weights": loaded.weights,
        "preset": loaded.config.preset,
        "trained_frames": trained,
        "frames": args.frames,
        "n": args.n,
        "seed": args.seed,
        "resolution": size,
        "render_level": model_cfg.render_level,
        "data": args.data,
        "real_frames": real_frames,
        "n_real": n_real,
        "fake": fake_stats,
        "real": real_stats,
        "summary": {"fake": summarise(fake_stats, trained), "real": summarise(real_stats, trained)},
    }
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(record, indent=1) + "\n")

    marker = [(trained, f"trained length ({trained})")]
    panels = []
    for key, title, ylabel in (
        ("frame_change", "frame-to-frame change", "mean |x_t − x_{t−1}| (0–255)"),
        ("hist_l1", "colour-histogram distance to the data", "L1 of 16-bin histograms"),
    ):
        series = []
        for values, label, colour, dashed in (
            (fake_stats[key], "generated", COLOURS[0], False),
            (real_stats[key], f"real ({n_real} clips)", COLOURS[1], True),
        ):
            xs = [t for t, v in enumerate(values) if v is not None]
            series.append(Series(label, xs, [values[t] for t in xs], colour, dashed))
        panels.append(Panel(title, "frame index", ylabel, series, log2_x=False, log10_y=False, vlines=marker))
    title = (
        f"{loaded.config.preset} ({loaded.weights} weights): {args.n} videos of {args.frames} frames "
        f"at {size} px"
    )
    png_path = line_chart(stem.with_suffix(".png"), panels, title=title)

    for key, summary in record["summary"]["fake"].items():
        real_ratio = record["summary"]["real"][key]["ratio"]
        print(
            f"{key}: frames < {trained}: {summary['within_trained']:.4f}, frames ≥ {trained}: "
            f"{summary['beyond_trained']:.4f} (×{summary['ratio']:.2f}); real ×{real_ratio:.2f}"
        )
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
