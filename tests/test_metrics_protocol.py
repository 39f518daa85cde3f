"""The evaluation commands end to end on tiny models: IS, stats, FID, FVD records (reference.md §5,
evaluation.md §3.1). Values are recomputed independently from the generator and the extractor."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
import torch

import tganv2
from tganv2.cli import main
from tganv2.config import load_preset
from tganv2.data import SyntheticVideoDataset, to_float
from tganv2.errors import WeightsError
from tganv2.metrics import (
    FeatureStats,
    VideoClassifier,
    frechet_distance,
    generate_videos,
    inception_score,
    load_classifier,
    load_i3d,
    save_classifier,
    videos_to_uint8,
)
from tganv2.metrics.evaluate import fvd_real_indices

FRAMES, SIZE = 8, 32  # tiny protocol: 8 frames, render level 3 of small-64 = 32 px


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("protocol")
    cfg = load_preset("small-64", ["model.render_level=3"])
    torch.manual_seed(0)
    generator = tganv2.build_generator(cfg)
    tganv2.save_generator(folder / "G.safetensors", generator, cfg)
    classifier = VideoClassifier(n_classes=9, size=SIZE, frames=FRAMES, width=4)
    classifier.train()
    with torch.no_grad():  # non-trivial BN running statistics
        clips = torch.stack([SyntheticVideoDataset(18, FRAMES, SIZE)[i][0] for i in range(18)])
        classifier(to_float(clips))
    save_classifier(folder / "clf.safetensors", classifier)
    return folder


def extractor_probs_and_features(generator, classifier, n, batch, seed):
    videos = torch.cat(list(generate_videos(generator, n, batch, seed, n_frames=FRAMES)))
    features, logits = classifier.features(videos)
    return torch.softmax(logits.double(), 1).numpy(), features.double().numpy()


def test_generated_videos_do_not_depend_on_the_batch_size(files):
    generator = tganv2.load_generator(files / "G.safetensors")
    a = torch.cat(list(generate_videos(generator, 6, 4, seed=1, n_frames=FRAMES)))
    b = torch.cat(list(generate_videos(generator, 6, 6, seed=1, n_frames=FRAMES)))
    c = torch.cat(list(generate_videos(generator, 6, 6, seed=2, n_frames=FRAMES)))
    assert a.shape == (6, 3, FRAMES, SIZE, SIZE)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert not torch.allclose(b, c)
    assert a.min() >= -1 and a.max() <= 1


def test_is_command_record_and_values(files, tmp_path):
    out = tmp_path / "is.json"
    args = ["evaluate", "is", "--checkpoint", str(files / "G.safetensors"), "--classifier",
            str(files / "clf.safetensors"), "--n", "12", "--loops", "2", "--batch", "8",
            "--frames", str(FRAMES), "--seed", "5", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    record = json.loads(out.read_text())
    assert record["metric"] == "is_classifier"
    assert (record["n"], record["loops"], record["splits"], record["seeds"]) == (12, 2, 1, [5, 6])
    assert (record["frames"], record["render_level"], record["resolution"]) == (FRAMES, 3, SIZE)
    assert record["checkpoint_sha256"] == sha256(files / "G.safetensors")
    assert record["weights_sha256"] == {"classifier": sha256(files / "clf.safetensors")}

    generator = tganv2.load_generator(files / "G.safetensors")
    classifier = load_classifier(files / "clf.safetensors")
    expected = [
        inception_score(extractor_probs_and_features(generator, classifier, 12, 8, s)[0])[0] for s in (5, 6)
    ]
    np.testing.assert_allclose(record["value"]["per_loop"], expected, rtol=1e-6)
    assert record["value"]["mean"] == pytest.approx(np.mean(expected), rel=1e-6)
    assert record["value"]["std"] == pytest.approx(np.std(expected), rel=1e-5, abs=1e-9)


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # 20 samples, dead ReLU features
def test_stats_then_fid_commands(files, tmp_path):
    stats_file = tmp_path / "stats.npz"
    clf = str(files / "clf.safetensors")
    args = ["evaluate", "stats", "--data", "synthetic", "--classifier", clf,
            "--out", str(stats_file), "--n-real", "27", "--batch", "9", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    classifier = load_classifier(files / "clf.safetensors")
    dataset = SyntheticVideoDataset(27, FRAMES, SIZE, seed=0, train=True)
    real = classifier.features(to_float(torch.stack([dataset[i][0] for i in range(27)])))[0].double().numpy()
    with np.load(stats_file, allow_pickle=False) as npz:
        np.testing.assert_allclose(npz["mean"], real.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(npz["cov"], np.cov(real, rowvar=False), rtol=1e-4, atol=1e-6)
        assert int(npz["n_items"]) == 27
    stats_record = json.loads((tmp_path / "stats.npz.json").read_text())
    assert (stats_record["n_real"], stats_record["videos"], stats_record["split"]) == (27, 27, "train")

    out = tmp_path / "fid.json"
    assert main(["evaluate", "fid", "--checkpoint", str(files / "G.safetensors"), "--stats", str(stats_file),
                 "--classifier", str(files / "clf.safetensors"), "--n", "20", "--loops", "2", "--batch", "10",
                 "--frames", str(FRAMES), "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    record = json.loads(out.read_text())
    assert record["metric"] == "fid_classifier" and record["seeds"] == [0, 1] and record["n_real"] == 27
    assert record["stats_sha256"] == sha256(stats_file)
    generator = tganv2.load_generator(files / "G.safetensors")
    real_stats = FeatureStats.load(stats_file)
    for seed, value in zip((0, 1), record["value"]["per_loop"]):
        fake = extractor_probs_and_features(generator, classifier, 20, 10, seed)[1]
        expected = frechet_distance(
            real_stats.mean, real_stats.cov(), fake.mean(0), np.cov(fake, rowvar=False)
        )
        assert value == pytest.approx(expected, rel=1e-4)
    assert record["value"]["mean"] > 0


class FakeI3D(torch.nn.Module):
    """Has StyleGAN-V's I3D call signature; refuses anything but uint8 input and the FVD flags."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(6, 8)

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise RuntimeError("expected uint8 videos")
        if not (rescale and resize and return_features):
            raise RuntimeError("expected rescale=True, resize=True, return_features=True")
        v = x.float() / 127.5 - 1  # (N, C, T, H, W)
        return self.proj(torch.cat([v.mean(dim=(2, 3, 4)), v.std(dim=(2, 3, 4))], dim=1))


@pytest.fixture(scope="module")
def fake_i3d(tmp_path_factory):
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13 but is the I3D file's format
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(FakeI3D()), str(path))
    return path


def test_fvd_command_with_a_scripted_detector(files, fake_i3d, tmp_path):
    out = tmp_path / "fvd.json"
    assert main(["evaluate", "fvd", "--checkpoint", str(files / "G.safetensors"), "--data", "synthetic",
                 "--i3d", str(fake_i3d), "--n", "12", "--batch", "6", "--frames", str(FRAMES),
                 "--size", str(SIZE), "--seed", "3", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    record = json.loads(out.read_text())
    assert record["metric"] == "fvd_i3d" and record["covariance_ddof"] == 0 and record["real_seed"] == 3
    assert record["weights_sha256"] == {"i3d": sha256(fake_i3d)}

    detector = load_i3d(fake_i3d).detector
    dataset = SyntheticVideoDataset(4096, FRAMES, SIZE, seed=3, train=True)  # what 'synthetic' opens
    real_clips = torch.stack([dataset[(int(i), 0)][0] for i in fvd_real_indices(len(dataset), 12, 3)])
    with torch.no_grad():
        real = detector(real_clips, rescale=True, resize=True, return_features=True).double().numpy()
    generator = tganv2.load_generator(files / "G.safetensors")
    fake_videos = videos_to_uint8(torch.cat(list(generate_videos(generator, 12, 6, 3, n_frames=FRAMES))))
    with torch.no_grad():
        fake = detector(fake_videos, rescale=True, resize=True, return_features=True).double().numpy()
    expected = frechet_distance(
        real.mean(0), np.cov(real, rowvar=False, ddof=0), fake.mean(0), np.cov(fake, rowvar=False, ddof=0)
    )
    assert record["value"]["mean"] == pytest.approx(expected, rel=1e-4)


def test_fvd_real_clips_cover_all_videos_uniformly_with_a_seed():
    indices = fvd_real_indices(4, 10, seed=0)
    counts = np.bincount(indices, minlength=4)
    assert counts.sum() == 10 and set(counts) <= {2, 3}
    drawn = fvd_real_indices(1000, 64, seed=1)
    assert len(set(drawn.tolist())) == 64 and drawn.max() > 500  # not the first 64 files in sorted order
    np.testing.assert_array_equal(drawn, fvd_real_indices(1000, 64, seed=1))


def test_videos_to_uint8_is_stylegan_v_mapping():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0]).view(1, 1, 5, 1, 1).expand(1, 3, 5, 1, 1)
    assert videos_to_uint8(x)[0, 0, :, 0, 0].tolist() == [0, 64, 128, 255, 255]


def test_classifier_file_round_trip_and_errors(files, tmp_path):
    classifier = load_classifier(files / "clf.safetensors")
    assert classifier.config()["frames"] == FRAMES and not classifier.training
    clips = torch.rand(3, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    reloaded = load_classifier(files / "clf.safetensors")
    assert torch.equal(classifier.features(clips)[1], reloaded.features(clips)[1])
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(WeightsError, match="bad.safetensors"):
        load_classifier(tmp_path / "bad.safetensors")


def test_train_classifier_command_writes_a_loadable_file(tmp_path, capsys):
    out = tmp_path / "clf.safetensors"
    assert main(["evaluate", "train-classifier", "--out", str(out), "--size", "32", "--frames", "4",
                 "--steps", "3", "--batch", "4", "--width", "4", "--n-train", "9", "--n-val", "9",
                 "--no-progress"]) == 0  # fmt: skip
    classifier = load_classifier(out)
    assert (classifier.size, classifier.frames, classifier.n_classes) == (32, 4, 9)
    assert classifier.training_info["steps"] == 3 and 0 <= classifier.training_info["val_accuracy"] <= 1
    assert "held-out accuracy" in capsys.readouterr().out


def test_extractor_options_are_checked_in_one_line(files, capsys):
    base = ["evaluate", "is", "--checkpoint", str(files / "G.safetensors")]
    assert main(base) == 2
    assert "--c3d FILE --c3d-mean FILE, or --classifier FILE" in capsys.readouterr().err
    assert main([*base, "--classifier", str(files / "clf.safetensors"), "--c3d", "x.npz"]) == 2
    assert "not both" in capsys.readouterr().err


def _tganv2_imports(module: str) -> set[str]:
    """tganv2 modules imported anywhere in ``module``'s source (lazy imports inside functions included)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    tree = ast.parse(open(spec.origin).read())
    package = module if spec.origin.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("tganv2") and _is_module(name)}


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # an attribute of a plain module, e.g. tganv2.data.base.to_float
        return False


def test_metrics_and_interop_never_import_training_code():
    seen, todo = set(), ["tganv2.metrics", "tganv2.metrics.cli", "tganv2.interop", "tganv2.interop.cli"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_tganv2_imports(module))
    assert "tganv2.metrics.classifier" in seen and "tganv2.data" in seen  # the walk follows lazy imports
    assert not [m for m in seen if m.startswith("tganv2.training")]
