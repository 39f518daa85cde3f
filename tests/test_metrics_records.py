"""Evaluation results are never lost: the score is printed before the record is written, and
`evaluate stats` counts the videos it read, not the files it found."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch

import tganv2
from tganv2.cli import main
from tganv2.config import load_preset
from tganv2.data import SyntheticVideoDataset, to_float
from tganv2.metrics import VideoClassifier, save_classifier

FRAMES, SIZE = 8, 32


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    cfg = load_preset("small-64", ["model.render_level=3"])
    torch.manual_seed(0)
    tganv2.save_generator(folder / "G.safetensors", tganv2.build_generator(cfg), cfg)
    classifier = VideoClassifier(n_classes=9, size=SIZE, frames=FRAMES, width=4)
    classifier.train()
    with torch.no_grad():  # non-trivial BN running statistics
        classifier(to_float(torch.stack([SyntheticVideoDataset(18, FRAMES, SIZE)[i][0] for i in range(18)])))
    save_classifier(folder / "clf.safetensors", classifier)
    return folder


def test_the_score_is_printed_before_a_failed_record_write(files, tmp_path, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the record's folder should be")
    out = blocker / "is.json"
    args = ["evaluate", "is", "--checkpoint", str(files / "G.safetensors"), "--classifier",
            str(files / "clf.safetensors"), "--n", "8", "--loops", "1", "--batch", "8",
            "--frames", str(FRAMES), "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("IS (classifier) = ")
    score = float(captured.out.split("=")[1].split("±")[0])
    assert 1.0 <= score <= 9.0
    assert captured.err.splitlines() == [
        f"tganv2: error: {out}: cannot write (File exists); the result printed above is not lost"
    ]
    good = tmp_path / "is.json"
    assert main([*args[:-2], str(good), "--no-progress"]) == 0
    assert json.loads(good.read_text())["value"]["mean"] == pytest.approx(score, abs=5e-5)


def _write_mpeg1(path, seed):
    ys, xs = np.mgrid[0:48, 0:64].astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg1video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for t in range(12):
            value = 128 + 90 * np.sin(xs / 9 + ys / 7 + t / 3 + seed)
            frame = np.stack([value, 255 - value, 0 * value + 60], -1).clip(0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_stats_counts_only_the_videos_it_read(files, tmp_path, capsys):
    videos = tmp_path / "videos"
    for i in range(3):
        _write_mpeg1(videos / f"good{i}.mpg", i)
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "noise.avi").write_bytes(np.random.default_rng(0).bytes(4000))
    stats = tmp_path / "real.npz"
    args = ["evaluate", "stats", "--data", str(videos), "--classifier", str(files / "clf.safetensors"),
            "--out", str(stats), "--batch", "5", "--no-progress"]  # fmt: skip
    with pytest.warns(tganv2.data.DataWarning, match="skipping 2 of 5 videos"):
        assert main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "real statistics: 30 clips (10 passes over 3 videos)"
    record = json.loads((tmp_path / "real.npz.json").read_text())
    assert (record["videos"], record["n_real"], record["passes"]) == (3, 30, 10)
