"""Which BatchNorm statistics suit the EMA copy of G? The measurement behind ``training/ema.py``.

Trains a narrow demo-64 (ch 4, clstm_ch 16, d_ch 4, z_dim 16) with an EMA, then renders 64 fixed-z eval
videos from the EMA weights with four sets of BatchNorm running statistics:
  * averaged with the weights' β over the run (BigGAN's EMA), tracked here beside the EMA;
  * copied from G (StyleGAN2-ADA's buffer copy);
  * recomputed on the training path (training-mode forwards with subsampling, 8 batches of 8);
  * recomputed on the inference path (``GeneratorEMA.averaged()``, what the project uses);
and prints each one's mean |difference| from the two recomputed ones (videos in [−1, 1]).

    .venv/bin/python benchmarks/ema_batchnorm.py --half-life 400 --iterations 100 --rampup 0
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from tganv2.config import load_preset
from tganv2.data import SyntheticVideoDataset, make_loader
from tganv2.training.ema import make_ema
from tganv2.training.step import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--half-life", type=float, default=400, help="train.ema_half_life (samples)")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--rampup", type=float, default=0.0, help="train.ema_rampup")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {"model.ch": 4, "model.clstm_ch": 16, "model.d_ch": 4, "model.z_dim": 16}
    cfg = load_preset(
        "demo-64",
        {
            **overrides,
            "train.iterations": args.iterations,
            "train.ema_half_life": args.half_life,
            "train.ema_rampup": args.rampup,
        },
    )
    torch.manual_seed(0)
    trainer = Trainer(cfg, "cpu", seed=0)
    ema = make_ema(cfg, trainer.generator)
    averaged = {k: v.clone() for k, v in trainer.generator.state_dict().items() if "running" in k}
    dataset = SyntheticVideoDataset(n_clips=2048, n_frames=16, size=64, seed=0)
    next_real = iter(make_loader(dataset, cfg.train.batch, num_workers=0, seed=0)).__next__  # uint8 clips

    t0 = time.time()
    for it in range(1, args.iterations + 1):
        trainer.step(next_real)
        ema.update(trainer.generator, trainer.iteration)
        g_state = trainer.generator.state_dict()
        for key, value in averaged.items():
            value.lerp_(g_state[key], 1 - ema.beta(it))
    print(
        f"{args.iterations} iterations in {time.time() - t0:.0f} s; last β = {ema.beta(args.iterations):.4f}"
    )

    def with_statistics(source: dict) -> torch.nn.Module:
        model = copy.deepcopy(ema.model)
        for key, value in model.state_dict().items():
            if key in source:
                value.copy_(source[key])
        return model.eval()

    g_state = trainer.generator.state_dict()
    variants = {
        "averaged with β": with_statistics(averaged),
        "copied from G": with_statistics({k: v for k, v in g_state.items() if "running" in k}),
    }
    training_path = copy.deepcopy(ema.model)
    for module in training_path.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    training_path.train()
    rng = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _ in range(8):
            training_path(training_path.make_z(8, generator=rng), rng=rng)
    variants["recomputed, training path"] = training_path.eval()
    variants["recomputed, inference path"] = ema.averaged()
    z = ema.model.make_z(64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        videos = {name: model(z) for name, model in variants.items()}  # (64, 3, 16, 64, 64)
    references = ["recomputed, training path", "recomputed, inference path"]
    for name, video in videos.items():
        gaps = "  ".join(f"vs {r.split(', ')[1]}: {(video - videos[r]).abs().mean():.4f}" for r in references)
        print(
            f"{name:28s} {gaps}  mean |x| {video.abs().mean():.3f}  std over videos {video.std(0).mean():.3f}"
        )


if __name__ == "__main__":
    main()
