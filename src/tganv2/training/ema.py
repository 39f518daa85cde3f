"""An exponential moving average of the generator's weights, as the StyleGAN family keeps (off by default).

The official TGANv2 code has no EMA, so ``train.ema_half_life = 0`` (off) is the default of every paper
preset. With a half-life of H samples, each G update of B samples (the level-1 batch of all ranks) moves
the copy by

    β = 0.5 ** (B / H_t),   H_t = min(H, ramp-up · n_before)   (H_t = H without a ramp-up),
    θ_ema ← β · θ_ema + (1 − β) · θ,

where ``n_before`` counts the samples G saw before this update: StyleGAN2-ADA's ``ema_kimg`` (in samples
here) and ``ema_rampup``. At the first update ``n_before = 0``, so β = 0 and the copy starts at G.

BatchNorm statistics. The generator renders in eval mode with BatchNorm running statistics, and those
must describe the activations of the *EMA* weights, which are not G's. So they are recomputed ("precise
BatchNorm", Wu & Johnson 2021): before each use (sample grid, score, snapshot, checkpoint) the copy runs
``RECOMPUTE_VIDEOS`` fixed-seed z through the inference path (eval mode: no subsampling, every level
rendered once) with its BatchNorms collecting a plain average of the batch statistics (momentum None):
the statistics of the very activations they normalise when the copy renders. The alternatives pair the
weights with statistics of other weights:
  * averaging the running statistics with the weights' β (BigGAN's EMA);
  * copying G's (StyleGAN2-ADA copies every buffer; its G has no BatchNorm).
Measured by ``benchmarks/ema_batchnorm.py`` (a demo-64 at ch 4 / clstm_ch 16 / d_ch 4, 100 iterations,
half-life 400 samples; 2-core AMD EPYC dev box, 2026-12-01): mean |difference| of 64 eval videos (mean
|x| ≈ 0.09) from those of the copy with statistics recomputed as here:

    ramp-up            averaged           copied    recomputed on the training path
    none (β 0.986)     0.081 (constant)   0.033     0.030
    0.05 (β 0.869)     0.011              0.013     0.021

The recompute's own noise (two seeds) is 0.008 at 32 videos and 0.005 at 128. Without a ramp-up the copy
lags G by ~50 iterations: averaged statistics then render constant grey videos, and copied ones are off
by more than the noise. With the default ramp-up the copy stays close to G and the three agree to about
the noise. Recomputing on the training path (training-mode forwards, subsampled levels) differs from the
inference path by 0.02–0.03: its batches hold few, correlated frames per level, so its averaged batch
variances are smaller; we use the inference path, which needs no subsampling draws and normalises
exactly what is rendered. The cost is ``RECOMPUTE_VIDEOS`` × L levels of forward passes without
gradients per use, not per step (demo-64: about 1.5 sample grids' worth). It draws from its own seeded
generator (the training streams are untouched) and depends only on the EMA weights, so a resume stays
bit-exact. ``update`` therefore averages only the parameters.

The copy lives on G's device, is never trained (``requires_grad`` off) and stays in eval mode. The update
is one ``torch._foreach_lerp_`` with a Python-float weight: no host synchronisation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import Config, build_generator

__all__ = ["GeneratorEMA", "ema_beta", "make_ema"]


def ema_beta(half_life: float, batch: int, samples_before: int, rampup: float = 0.0) -> float:
    """β of one update of ``batch`` samples after ``samples_before`` samples (see the module docstring)."""
    if rampup > 0:
        half_life = min(half_life, samples_before * rampup)
    return 0.5 ** (batch / max(half_life, 1e-8))


RECOMPUTE_VIDEOS = 32  # fixed-seed videos behind the recomputed BatchNorm statistics
RECOMPUTE_BATCH = 16  # videos per forward pass (no gradients: as `tganv2 evaluate`'s default batch)
RECOMPUTE_SEED = 4242


class GeneratorEMA:
    """The EMA copy of a generator: ``update`` after each step, ``averaged()`` to sample, ``state_dict``."""

    def __init__(
        self,
        generator: nn.Module,  # the trained G; the copy starts equal to it
        copy: nn.Module,  # a freshly built generator of the same config (plain BatchNorm, not SyncBatchNorm)
        half_life: float,  # in samples (train.ema_half_life), > 0
        batch: int,  # samples per G update, over all ranks (train.batch × world size)
        rampup: float = 0.0,  # train.ema_rampup; 0 = none
        recompute_batch: int = RECOMPUTE_BATCH,  # videos per forward when recomputing the statistics
    ) -> None:
        if half_life <= 0:
            raise ValueError(f"half_life must be > 0, got {half_life}")
        self.half_life, self.batch, self.rampup = float(half_life), int(batch), float(rampup)
        self.recompute_batch = int(recompute_batch)
        self.model = copy.to(next(generator.parameters()).device).eval().requires_grad_(False)
        self.model.load_state_dict(generator.state_dict())
        self.batch_norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self._stale = True  # the BatchNorm statistics do not match the weights yet

    def beta(self, iteration: int) -> float:
        """β of the update that ends iteration ``iteration`` (1 = the first step)."""
        return ema_beta(self.half_life, self.batch, (iteration - 1) * self.batch, self.rampup)

    @torch.no_grad()
    def update(self, generator: nn.Module, iteration: int) -> None:
        """Move the copy's parameters towards ``generator``'s after step ``iteration`` (``trainer.iteration``
        after it)."""
        ours, theirs = list(self.model.parameters()), [p.detach() for p in generator.parameters()]
        if len(ours) != len(theirs):
            raise ValueError("the EMA copy and the generator have different parameters")
        torch._foreach_lerp_(ours, theirs, 1.0 - self.beta(iteration))  # ema += (1 − β)(θ − ema)
        self._stale = True

    @torch.no_grad()
    def recompute_statistics(self) -> None:
        """Set every BatchNorm's running statistics to the average over ``RECOMPUTE_VIDEOS`` inference
        videos of the copy (see the module docstring)."""
        model = self.model
        rng = torch.Generator().manual_seed(RECOMPUTE_SEED)
        momenta = [bn.momentum for bn in self.batch_norms]
        for bn in self.batch_norms:
            bn.reset_running_stats()
            bn.momentum = None  # a plain average over the batches
            bn.train()  # batch statistics, in an otherwise eval-mode (inference-path) forward
        try:
            for start in range(0, RECOMPUTE_VIDEOS, self.recompute_batch):
                n = min(self.recompute_batch, RECOMPUTE_VIDEOS - start)
                z, y = model.make_z(n, generator=rng), model.make_labels(n)
                for level in range(1, model.n_levels + 1):  # every block and renderer, at its own level
                    model(z, y, render_level=level)
        finally:
            for bn, momentum in zip(self.batch_norms, momenta):
                bn.momentum = momentum
            model.eval()
        self._stale = False

    def averaged(self) -> nn.Module:
        """The copy, ready to sample: statistics recomputed if the weights moved since the last time."""
        if self._stale:
            self.recompute_statistics()
        return self.model

    def state_dict(self) -> dict[str, Tensor]:
        """The copy's state, with statistics that match its weights (for checkpoints and snapshots)."""
        return self.averaged().state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)
        self._stale = False  # saved by state_dict(): the statistics match


def make_ema(cfg: Config, generator: nn.Module, world_size: int = 1) -> GeneratorEMA | None:
    """The EMA of ``cfg.train.ema_*`` for ``generator``, or None when ``train.ema_half_life`` is 0."""
    t = cfg.train
    if t.ema_half_life <= 0:
        return None
    return GeneratorEMA(generator, build_generator(cfg), t.ema_half_life, t.batch * world_size, t.ema_rampup)
