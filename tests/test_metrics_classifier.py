"""The synthetic-data classifier as a download-free C3D stand-in: it separates the 9 synthetic classes,
scores real clips near 9 and an untrained generator far below (reference.md §5 protocol, same code path).

The classifier is trained once per test session (~400 Adam steps on 32 px clips); under pytest-xdist the
first worker trains it and the others wait on a file lock and load the saved file.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from filelock import FileLock

import tganv2
from tganv2.config import load_preset
from tganv2.data import SyntheticVideoDataset, to_float
from tganv2.metrics import (
    ClassifierScorer,
    frechet_distance,
    generate_videos,
    inception_score,
    load_classifier,
    save_classifier,
    train_classifier,
)
from tganv2.metrics.classifier import accuracy, render_clips

SIZE, FRAMES, N_CLASSES = 32, 16, 9


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory):
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by all workers of this session
    path = root / "synthetic_classifier.safetensors"
    with FileLock(str(path) + ".lock"):
        if not path.is_file():
            model = train_classifier(
                size=SIZE, frames=FRAMES, steps=400, n_train=2700, n_val=450, seed=0, progress=False
            )
            save_classifier(path, model)
    return load_classifier(path)


@pytest.fixture(scope="module")
def held_out():
    """Clips from the dataset's test stream with a seed the classifier never saw."""
    return render_clips(SyntheticVideoDataset(270, FRAMES, SIZE, seed=11, train=False))


@pytest.fixture(scope="module")
def untrained_generator():
    torch.manual_seed(0)
    cfg = load_preset("small-64", ["model.render_level=3"])  # level 3 of small-64 renders 32 px
    return tganv2.build_generator(cfg).eval()


def test_classifier_separates_the_synthetic_classes(trained_classifier, held_out):
    assert trained_classifier.training_info["val_accuracy"] >= 0.9
    clips, labels = held_out
    assert accuracy(trained_classifier, clips, labels) >= 0.9


def test_classifier_is_of_real_clips_is_near_the_class_count_and_an_untrained_generator_far_below(
    trained_classifier, held_out, untrained_generator
):
    clips, _ = held_out  # 30 clips per class
    _, logits = trained_classifier.features(to_float(clips))
    real_is, _ = inception_score(torch.softmax(logits.double(), 1).numpy())
    assert 0.75 * N_CLASSES <= real_is <= N_CLASSES

    generated = torch.cat(list(generate_videos(untrained_generator, 64, 32, seed=0, n_frames=FRAMES)))
    _, fake_logits = trained_classifier.features(generated)
    fake_is, _ = inception_score(torch.softmax(fake_logits.double(), 1).numpy())
    assert fake_is <= 0.4 * N_CLASSES


def test_classifier_scorer_for_the_training_loop(trained_classifier, held_out, untrained_generator, tmp_path):
    real_set = SyntheticVideoDataset(180, FRAMES, SIZE, seed=4, train=True)
    scorer = ClassifierScorer(trained_classifier, real=real_set, n_samples=64, batch=32)
    assert scorer.real_stats.n_items == 180

    untrained_generator.train()
    scores = scorer.score(untrained_generator, seed=1)
    assert untrained_generator.training  # mode restored
    assert scores == scorer.score(untrained_generator, seed=1)  # deterministic for a seed
    assert scores["cls_is"] <= 0.4 * N_CLASSES

    # real held-out clips against the same real statistics: a much smaller distance than the generator's
    clips, _ = held_out
    real_features = trained_classifier.features(to_float(clips))[0].double().numpy()
    real_stats = scorer.real_stats
    real_fid = frechet_distance(
        real_stats.mean, real_stats.cov(), real_features.mean(0), np.cov(real_features, rowvar=False)
    )
    assert scores["cls_fid"] > 5 * real_fid

    # cached statistics on disk give the same score
    scorer.real_stats.save(tmp_path / "real.npz")
    cached = ClassifierScorer(trained_classifier, real=tmp_path / "real.npz", n_samples=64, batch=32)
    assert cached.score(untrained_generator, seed=1) == pytest.approx(scores, rel=1e-9)
