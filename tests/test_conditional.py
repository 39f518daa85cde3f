"""Class-conditional training end to end: labels from every dataset kind, D's projection term, one grid row
per class, `generate --class K` and a class-balanced mix, class-balanced scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import tiny_args
from tganv2.cli import main
from tganv2.config import build_generator
from tganv2.data.video import read_video, write_video
from tganv2.metrics.evaluate import generate_videos
from tganv2.snapshot import load_snapshot

TINY = tiny_args("data.synthetic_size=36", "train.log_every=1")


def _train(out, *extra: str) -> int:
    args = ["train", "--preset", "small-64", "--out", str(out), "--no-progress", "--threads", "1"]
    return main([*args, "--checkpoint-every", "100", "--sample-every", "100", *extra, *TINY])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`tganv2 train --preset small-64 model.n_classes=9` (synthetic data, 9 classes) for 3 iterations."""
    out = tmp_path_factory.mktemp("cond") / "run"
    assert _train(out, "--iterations", "3", "model.n_classes=9") == 0
    return out


def test_three_iterations_train_g_and_d_with_labels(run):
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss_dis" in r] == [1, 2, 3]
    state = torch.load(run / "checkpoints" / "ckpt-0000003.pt", weights_only=True)
    fresh = build_generator(load_snapshot(run / "generator.safetensors").config)
    # G's class-conditional BN gains and D's projection embedding were trained (they start at 1 / Xavier)
    gamma = state["generator"]["blocks.0.bn1.gamma.weight"]
    assert gamma.shape == (9, 8) and not torch.equal(gamma, fresh.state_dict()["blocks.0.bn1.gamma.weight"])
    embed = state["trainer"]["discriminator"]["levels.0.embed.weight"]
    assert embed.shape == (9, 32)  # (classes, 16·d_ch)
    assert state["trainer"]["opt_d"]["state"]  # Adam moments exist for D, embedding included
    names = list(state["trainer"]["discriminator"])
    index = names.index("levels.0.embed.weight")
    assert state["trainer"]["opt_d"]["state"][index]["exp_avg"].abs().sum() > 0  # a non-zero gradient


def test_sample_grid_has_one_row_per_class(run):
    frames = read_video(run / "samples" / "iter_0000003.mp4")
    assert frames.shape == (8, 9 * 66 + 2, 4 * 66 + 2, 3)  # 9 class rows × 4 level columns of 64 px


def test_generate_one_class_and_a_balanced_mix(run, tmp_path):
    loaded = load_snapshot(run / "generator.safetensors")
    for k in (0, 4, 8):
        out = tmp_path / f"class{k}.npz"
        assert (
            main(["generate", "--checkpoint", str(run), "--out", str(out), "--n", "3", "--class", str(k)])
            == 0
        )
        with np.load(out, allow_pickle=False) as data:
            assert data["videos"].shape == (3, 3, 8, 64, 64)
            assert data["labels"].tolist() == [k, k, k]
            z = loaded.model.make_z(3, torch.Generator().manual_seed(0))
            with torch.no_grad():
                video = loaded.model(z, torch.full((3,), k)).clamp(-1, 1)
            np.testing.assert_array_equal(data["videos"], (video * 128 + 128).clamp(0, 255).to(torch.uint8))
    out = tmp_path / "mix.npz"
    assert main(["generate", "--checkpoint", str(run), "--out", str(out), "--n", "20", "--batch", "7"]) == 0
    with np.load(out, allow_pickle=False) as data:
        assert np.bincount(data["labels"], minlength=9).tolist() == [3, 3, 2, 2, 2, 2, 2, 2, 2]
    # a class video differs from another class's with the same z
    with np.load(tmp_path / "class0.npz") as a, np.load(tmp_path / "class8.npz") as b:
        assert not np.array_equal(a["videos"], b["videos"])


def test_generate_class_errors_are_one_line(run, tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(run), "--out", str(tmp_path / "x.npz"), "--class", "9"]) == 2
    assert capsys.readouterr().err.strip() == "tganv2: error: --class must be in 0..8, got 9"


def test_scoring_generates_class_balanced(tiny_cfg):
    generator = build_generator(tiny_cfg(n_classes=3)).eval()
    seen = []
    real_forward = generator.forward

    def spy(z, y=None, **kwargs):
        seen.append(y.clone())
        return real_forward(z, y, **kwargs)

    generator.forward = spy
    list(generate_videos(generator, n=10, batch=4, seed=0, n_frames=4))
    assert torch.cat(seen).tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]


def _moving(n_frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n_frames, 64, 64, 3), dtype=np.uint8)


def _h5(folder):
    import h5py

    image = np.random.default_rng(0).integers(0, 256, (40, 3, 64, 64), dtype=np.uint8)
    with h5py.File(folder / "train.h5", "w") as f:
        f.create_dataset("image", data=image)
    records = [{"start": 10 * i, "end": 10 * i + 10, "category": ["Drum", "Swing"][i % 2]} for i in range(4)]
    (folder / "train.json").write_text(json.dumps(records))
    return folder / "train.h5"


@pytest.mark.parametrize("kind", ["folder", "hdf5"])
def test_labels_from_class_folders_and_hdf5_categories(tmp_path, kind, capsys):
    if kind == "folder":
        data = tmp_path / "videos"
        for i, name in enumerate(["ClassA", "ClassA", "ClassB", "ClassB"]):
            write_video(data / name / f"{i}.mp4", _moving(10, i), fps=8)
    else:
        data = _h5(tmp_path)
    assert _train(tmp_path / "run", "--data", str(data), "--iterations", "2", "model.n_classes=2") == 0
    assert read_video(tmp_path / "run" / "samples" / "iter_0000002.mp4").shape[1] == 2 * 66 + 2  # 2 rows
    capsys.readouterr()
    assert _train(tmp_path / "bad", "--data", str(data), "--iterations", "2", "model.n_classes=3") == 2
    err = capsys.readouterr().err.strip()
    assert "model.n_classes=3" in err and "has 2 classes" in err and "model.n_classes=2" in err
    assert len(err.splitlines()) == 1
