"""An exponential moving average of the generator's weights, as the StyleGAN family keeps (off by default).

The official TGANv2 code has no EMA, so ``train.ema_half_life = 0`` (off) is the default of every paper
preset. With a half-life of H samples, each G update of B samples (the level-1 batch of all ranks) moves
the copy by

    β = 0.5 ** (B / H_t),   H_t = min(H, ramp-up · n_before)   (H_t = H without a ramp-up),
    θ_ema ← β · θ_ema + (1 − β) · θ,

where ``n_before`` counts the samples G saw before this update: StyleGAN2-ADA's ``ema_kimg`` (in samples
here) and ``ema_rampup``. At the first update ``n_before = 0``, so β = 0 and the copy starts at G.

BatchNorm statistics. The generator renders in eval mode with BatchNorm running statistics, and those
must describe the *EMA* weights' activations, not the current G's. We average them with the same β as the
weights (BigGAN's EMA does the same), rather than:
  * copying G's running statistics (StyleGAN2-ADA copies every buffer; its G has no BatchNorm). G's
    statistics follow its last ~7 batches (momentum 0.1), so early in training, when the weights move fast
    and the EMA lags, the copy would normalise old weights with new statistics;
  * recomputing them with extra training-mode forwards of the copy before each use ("standing
    statistics"). That costs forward passes at every grid, score and snapshot, needs the subsampling draws
    of a training forward, and makes the snapshot depend on the recompute's batch and seed.
Averaging keeps the statistics on the weights' own time window, costs nothing extra, and is part of the
copy's state, so a resume is bit-exact. The integer ``num_batches_tracked`` counters are copied.

The copy lives on G's device, is never trained (``requires_grad`` off) and stays in eval mode. The update
is two ``torch._foreach_lerp_`` calls with a Python-float weight: no host synchronisation.
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


class GeneratorEMA:
    """The EMA copy of a generator: ``update`` after each step, ``model`` to sample, ``state_dict``."""

    def __init__(
        self,
        generator: nn.Module,  # the trained G; the copy starts equal to it
        copy: nn.Module,  # a freshly built generator of the same config (plain BatchNorm, not SyncBatchNorm)
        half_life: float,  # in samples (train.ema_half_life), > 0
        batch: int,  # samples per G update, over all ranks (train.batch × world size)
        rampup: float = 0.0,  # train.ema_rampup; 0 = none
    ) -> None:
        if half_life <= 0:
            raise ValueError(f"half_life must be > 0, got {half_life}")
        self.half_life, self.batch, self.rampup = float(half_life), int(batch), float(rampup)
        self.model = copy.to(next(generator.parameters()).device).eval().requires_grad_(False)
        self.model.load_state_dict(generator.state_dict())

    def _tensors(self, generator: nn.Module) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """(copy's float tensors, G's float tensors, copy's integer buffers, G's integer buffers)."""
        ours, theirs = self.model.state_dict(keep_vars=True), generator.state_dict(keep_vars=True)
        if ours.keys() != theirs.keys():
            raise ValueError("the EMA copy and the generator have different tensors")
        floats = [k for k in ours if ours[k].is_floating_point()]
        ints = [k for k in ours if not ours[k].is_floating_point()]
        return (
            [ours[k].data for k in floats],
            [theirs[k].data for k in floats],
            [ours[k].data for k in ints],
            [theirs[k].data for k in ints],
        )

    def beta(self, iteration: int) -> float:
        """β of the update that ends iteration ``iteration`` (1 = the first step)."""
        return ema_beta(self.half_life, self.batch, (iteration - 1) * self.batch, self.rampup)

    @torch.no_grad()
    def update(self, generator: nn.Module, iteration: int) -> None:
        """Move the copy towards ``generator`` after step ``iteration`` (``trainer.iteration`` after it)."""
        ema_floats, floats, ema_ints, ints = self._tensors(generator)
        torch._foreach_lerp_(ema_floats, floats, 1.0 - self.beta(iteration))  # ema += (1 − β)(θ − ema)
        for ours, theirs in zip(ema_ints, ints):
            ours.copy_(theirs)

    def state_dict(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)


def make_ema(cfg: Config, generator: nn.Module, world_size: int = 1) -> GeneratorEMA | None:
    """The EMA of ``cfg.train.ema_*`` for ``generator``, or None when ``train.ema_half_life`` is 0."""
    t = cfg.train
    if t.ema_half_life <= 0:
        return None
    return GeneratorEMA(generator, build_generator(cfg), t.ema_half_life, t.batch * world_size, t.ema_rampup)
