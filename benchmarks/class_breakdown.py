"""Which classes a generator draws: the synthetic classifier's probabilities split into shape and motion.

The synthetic dataset's 9 classes are ``3 · shape + motion`` (``tganv2.data.synthetic``), so each video's
class probabilities ``(9,)`` sum to a shape part ``(3,)`` (over the motions) and a motion part ``(3,)``
(over the shapes). For each part this prints its IS (the same ``inception_score`` as classifier-IS; at
most 3), the mean top probability (how sure the classifier is) and the marginal (which shapes or motions
the generator draws). The README's demo diagnosis comes from it::

    .venv/bin/python benchmarks/class_breakdown.py runs/demo-64/generator.safetensors \\
        --classifier runs/classifier-synthetic-64.safetensors

Each argument is a generator snapshot (``generator.safetensors``) or a training checkpoint (``ckpt-*.pt``,
its raw weights unless ``--weights ema``).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from tganv2.data.synthetic import MOTIONS, SHAPES
from tganv2.errors import UserError
from tganv2.metrics.classifier import load_classifier
from tganv2.metrics.evaluate import generated_features
from tganv2.metrics.scores import inception_score
from tganv2.snapshot import load_snapshot


def factor_scores(probs: np.ndarray) -> dict[str, dict]:
    """``probs`` ``(N, 9)`` → for "all", "shape" and "motion": IS, mean top probability, marginal."""
    probs = np.asarray(probs, dtype=np.float64)
    grid = probs.reshape(-1, len(SHAPES), len(MOTIONS))  # (N, shape, motion)
    parts = {"all": probs, "shape": grid.sum(axis=2), "motion": grid.sum(axis=1)}
    return {
        name: {
            "is": inception_score(p)[0],
            "confidence": float(p.max(axis=1).mean()),
            "marginal": [float(v) for v in p.mean(axis=0)],
        }
        for name, p in parts.items()
    }


def describe(name: str, scores: dict[str, dict]) -> str:
    shape, motion = scores["shape"], scores["motion"]
    shares = ", ".join(f"{s} {v:.0%}" for s, v in zip(SHAPES, shape["marginal"]))
    moves = ", ".join(f"{m} {v:.0%}" for m, v in zip(MOTIONS, motion["marginal"]))
    return (
        f"{name}: IS {scores['all']['is']:.2f} = shape IS {shape['is']:.2f} (sure {shape['confidence']:.2f}; "
        f"{shares}) × motion IS {motion['is']:.2f} (sure {motion['confidence']:.2f}; {moves})"
    )


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("snapshots", nargs="+", help="generator .safetensors snapshots or ckpt-*.pt checkpoints")
    p.add_argument("--classifier", required=True, help="synthetic-data classifier .safetensors")
    p.add_argument("--n", type=int, default=256, help="generated videos per snapshot (default: 256)")
    p.add_argument("--seed", type=int, default=0, help="z seed, as the periodic scores use (default: 0)")
    p.add_argument(
        "--weights", choices=["raw", "ema"], default=None, help="which copy (default: EMA if present)"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print one JSON record per snapshot instead")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        classifier = load_classifier(args.classifier)
        if classifier.n_classes != len(SHAPES) * len(MOTIONS):
            raise UserError(f"{args.classifier}: {classifier.n_classes} classes, expected the synthetic 9")
        for path in args.snapshots:
            loaded = load_snapshot(path, weights=args.weights)  # None: the EMA copy when the file has one
            _, probs, _ = generated_features(
                loaded.model, classifier, args.n, 32, args.seed, classifier.frames
            )
            scores = factor_scores(probs)
            print(json.dumps({"snapshot": path, **scores}) if args.json else describe(path, scores))
    except UserError as e:
        print(f"class_breakdown.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
