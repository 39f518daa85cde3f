"""benchmarks/long_video.py: per-frame statistics of videos longer than trained, JSON + PNG."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tganv2.config import build_generator
from tganv2.snapshot import save_generator
from tganv2.training.samples import video_statistics

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "long_video.py"


@pytest.fixture(scope="module")
def long_video():
    spec = importlib.util.spec_from_file_location("long_video", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_per_frame_statistics_on_known_videos(long_video):
    # 2 videos, 4 frames, constant frames whose value steps by 0.25, 0.5, 0 (in [−1, 1] units)
    levels = torch.tensor([-0.5, -0.25, 0.25, 0.25])
    videos = levels.view(1, 1, 4, 1, 1).expand(2, 3, 4, 8, 8).contiguous()
    reference = video_statistics(videos[:, :, :1])["histogram"]  # frame 0's histogram
    stats = long_video.per_frame_statistics(videos, reference)
    assert stats["frame_change"][0] is None
    assert stats["frame_change"][1:] == pytest.approx([0.25 * 128, 0.5 * 128, 0.0])
    assert stats["hist_l1"] == pytest.approx([0.0, 2.0, 2.0, 2.0])  # the same bin, then disjoint bins
    summary = long_video.summarise(stats, trained=2)
    assert summary["frame_change"]["within_trained"] == pytest.approx(32.0)  # frame 1 only
    assert summary["frame_change"]["beyond_trained"] == pytest.approx(32.0)  # mean of 64 and 0
    assert summary["hist_l1"]["ratio"] == pytest.approx(2.0)


def test_script_writes_json_and_chart(long_video, tiny_cfg, tmp_path, capsys):
    cfg = tiny_cfg()
    snapshot = save_generator(tmp_path / "G.safetensors", build_generator(cfg).eval(), cfg)
    out = tmp_path / "report" / "long"
    assert (
        long_video.main(["--checkpoint", str(snapshot), "--out", str(out), "--n", "4", "--frames", "12"]) == 0
    )
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["trained_frames"] == 8 and record["frames"] == 12 and record["weights"] == "raw"
    assert len(record["fake"]["frame_change"]) == 12 and len(record["real"]["hist_l1"]) == 12
    assert record["fake"]["frame_change"][0] is None and record["fake"]["frame_change"][1] > 0
    assert record["resolution"] == 64 and record["n_real"] == 4
    with Image.open(out.with_suffix(".png")) as image:
        assert image.size == (2 * 560, 440 + 30)
    assert "frame_change: frames < 8" in capsys.readouterr().out
