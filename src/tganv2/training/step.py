"""One training iteration of the official ``DiracUpdater`` (reference.md §2.3-2.4, §4.1).

Order inside an iteration (n_dis = 1):
  1. draw a real batch, make its levels with S^D, compute D(real);
  2. draw z, generate the fake levels, compute D(fake);
  3. update G first, using that D(fake);
  4. detach the fakes (Chainer's ``unchain_backward``);
  5. update D with the *same* fake scores (computed before G's update) plus R1 on the real levels.
With n_dis > 1, G is updated on the first inner step only; every inner step draws fresh reals and z.

Step 4 is done without a second D forward: D runs once on detached copies of the fakes; the G loss is
differentiated with respect to those copies only, and that image gradient is pushed into G. D's graph is
kept and reused for the D loss, exactly as the official code reuses the fake scores.

Multi-process: gradients are all-reduce *averaged* over ranks (ChainerMN's multi-node optimiser) and the
generator's BatchNorms are SyncBatchNorm. ``GradientAverager`` reduces buckets during the backward rather
than wrapping in DDP, because the step differentiates D several times (image gradients, R1's double
backward).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..config import Config, build_discriminator, build_generator
from ..data.base import to_float
from ..losses import discriminator_loss, full_precision, generator_loss, r1_lambda_sum, r1_penalty
from ..nn.subsample import subsample_batch
from .distributed import GradientAverager
from .layout import to_channels_last

__all__ = ["Trainer", "make_optimizer", "linear_decay", "real_levels", "real_batch_to_device", "discriminate"]

# (clips (B, C, T, S, S): uint8 from the loader, or float in [-1, 1]; labels (B,) or None)
RealBatch = tuple[Tensor, Tensor | None]


def make_optimizer(module: nn.Module, cfg: Config) -> torch.optim.Adam:
    """Adam(1e-4, β = (0, 0.9), eps 8e-8), as both official optimisers."""
    t = cfg.train
    return torch.optim.Adam(module.parameters(), lr=t.lr, betas=tuple(t.betas), eps=t.adam_eps)


def linear_decay(iterations: int) -> Callable[[int], float]:
    """Chainer ``LinearShift`` from 1 at iteration 0 to 0 at ``iterations`` (multiplier of the lr)."""
    return lambda it: max(0.0, 1.0 - it / iterations)


def real_levels(clips: Tensor, cfg: Config, rng: torch.Generator) -> list[Tensor]:
    """S^D: the real level videos, through the same subsampling code as the generator (§3.3)."""
    from ..data.multilevel import real_levels_from_config

    return real_levels_from_config(clips, cfg.model, generator=rng)


def real_batch_to_device(
    clips: Tensor, labels: Tensor | None, device: torch.device, n_classes: int
) -> RealBatch:
    """A loader batch on the device: uint8 clips are copied as uint8 and converted there (``to_float``).

    The loader pins its batches when training on CUDA, so ``non_blocking`` copies overlap the step; the
    host never touches float pixels. Float clips (tests, ``bench step``) are moved as they are.
    """
    clips = clips.to(device, non_blocking=True)  # (B, C, T, S, S)
    if clips.dtype == torch.uint8:
        clips = to_float(clips)
    labels = None if labels is None or n_classes == 0 else labels.to(device, non_blocking=True)
    return clips, labels


def discriminate(
    D: nn.Module,
    reals: list[Tensor],
    fakes: list[Tensor],
    level_labels: list[Tensor] | None,
    joint: bool = False,
) -> tuple[Tensor, Tensor]:
    """D's scores of the real and the fake levels, ``(ΣN_l, 1)`` each, in full precision.

    ``joint=False``: two passes (the official code). ``joint=True``: one pass per level over the reals and
    the fakes concatenated along the batch, split back afterwards; the same scores, fewer and larger
    kernels, but R1's double backward then runs through the whole joint batch (the fake half gets zero
    gradients, yet costs as much as the real half), so it is an option (``train.d_joint_pass``).
    """
    if not joint:
        return full_precision(D(reals, level_labels)), full_precision(D(fakes, level_labels))
    both = [torch.cat([r, f]) for r, f in zip(reals, fakes)]  # (2·N_l, C, T_l, H_l, W_l)
    labels = None if level_labels is None else [torch.cat([y, y]) for y in level_labels]
    sizes = [r.shape[0] for r in reals]
    per_level = full_precision(D(both, labels)).split([2 * n for n in sizes])  # (2·N_l, 1) each
    real_scores = torch.cat([s[:n] for s, n in zip(per_level, sizes)])  # (ΣN_l, 1)
    fake_scores = torch.cat([s[n:] for s, n in zip(per_level, sizes)])
    return real_scores, fake_scores


class Trainer:
    """G, D, their optimisers and lr schedules, and the official update rule in ``step``."""

    def __init__(
        self,
        cfg: Config,  # the full config; only train.* and model.* are read
        device: str | torch.device = "cpu",  # where the models live
        generator: nn.Module | None = None,  # prebuilt modules (e.g. SyncBatchNorm-converted)
        discriminator: nn.Module | None = None,
        seed: int = 0,  # seeds the trainer's random streams (give each rank its own)
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        generator = generator if generator is not None else build_generator(cfg)
        discriminator = discriminator if discriminator is not None else build_discriminator(cfg)
        self.generator = generator.to(self.device).train()
        self.discriminator = discriminator.to(self.device).train()
        # CUDA: channels_last(_3d) conv weights, so cuDNN runs its NHWC/NDHWC kernels without transposes
        to_channels_last(self.generator, self.device.type == "cuda")
        to_channels_last(self.discriminator, self.device.type == "cuda")
        # multi-process: bucketed all-reduce averages, overlapped with each update's backward
        self.grad_sync_g = GradientAverager(self.generator)
        self.grad_sync_d = GradientAverager(self.discriminator)
        # --compile: only the generator's forward; never the D pass that R1 differentiates through
        self.generator_forward = torch.compile(self.generator) if cfg.train.compile else self.generator
        self.opt_g = make_optimizer(self.generator, cfg)
        self.opt_d = make_optimizer(self.discriminator, cfg)
        decay = linear_decay(cfg.train.iterations)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.joint_d_pass = cfg.train.d_joint_pass  # one D pass over reals and fakes (see discriminate)
        self.r1_lambda = r1_lambda_sum(cfg.train.r1_lambda, cfg.train.r1_reference_batch, cfg.train.batch)
        self.iteration = 0
        # Two random streams: z and the generator's subsampling offsets; the real levels' offsets.
        self.rng_fake = torch.Generator().manual_seed(seed * 1000 + 1)
        self.rng_real = torch.Generator().manual_seed(seed * 1000 + 2)

    def sample_z(self, batch: int) -> Tensor:
        """z ~ U(−1, 1)^(batch × z_dim) from the fake stream."""
        return self.generator.make_z(batch, generator=self.rng_fake, device=self.device)

    def _autocast(self):
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _level_labels(self, labels: Tensor | None) -> list[Tensor] | None:
        """Per-level labels after the cumulative batch strides (only for class-conditional models)."""
        if labels is None or self.cfg.model.n_classes == 0:
            return None
        out = [labels]
        for batch_stride in self.cfg.model.batch_strides:
            out.append(subsample_batch(out[-1], batch_stride))
        return out

    def step(self, next_real: Callable[[], RealBatch]) -> dict[str, float]:
        """One iteration; ``next_real()`` returns a real batch ``(clips (B, C, T, S, S), labels)``."""
        cfg, D = self.cfg, self.discriminator
        stats: dict[str, float] = {}
        for inner in range(cfg.train.n_dis):
            clips, labels = real_batch_to_device(*next_real(), self.device, cfg.model.n_classes)
            batch = clips.shape[0]
            # 1. reals: S^D levels, leaves that require grad for R1
            reals = [x.detach().requires_grad_(True) for x in real_levels(clips, cfg, self.rng_real)]
            # 2. fakes: z ~ U(-1, 1); the same labels as the reals for conditional models
            z = self.sample_z(batch)
            update_g = inner == 0
            with self._autocast(), torch.set_grad_enabled(update_g):
                fakes = self.generator_forward(z, labels, rng=self.rng_fake)
            fake_inputs = [full_precision(f.detach()).requires_grad_(update_g) for f in fakes]
            level_labels = self._level_labels(labels)
            with self._autocast():
                # (ΣN_l, 1) each
                real_scores, fake_scores = discriminate(
                    D, reals, fake_inputs, level_labels, self.joint_d_pass
                )
            # 3. G first, through the image gradient of the G loss (D's parameters are not touched)
            if update_g:
                loss_gen = generator_loss(fake_scores)
                image_grads = torch.autograd.grad(loss_gen, fake_inputs, retain_graph=True)
                self.opt_g.zero_grad(set_to_none=True)
                with self.grad_sync_g:
                    torch.autograd.backward(fakes, [g.to(f.dtype) for g, f in zip(image_grads, fakes)])
                self.opt_g.step()
                stats["loss_gen"] = loss_gen.item()
            # 4-5. D with the same fake scores, plus R1 (summed, λ scaled to the per-device batch)
            loss_dis = discriminator_loss(real_scores, fake_scores)
            loss_gp = r1_penalty(real_scores, reals, self.r1_lambda)
            self.opt_d.zero_grad(set_to_none=True)
            # only D's parameters: the image gradients of reals and fakes are not needed here
            with self.grad_sync_d:
                (loss_dis + loss_gp).backward(inputs=list(D.parameters()))
            self.opt_d.step()
            stats["loss_dis"], stats["loss_gp"] = loss_dis.item(), loss_gp.item()
            stats["d_real"] = real_scores.mean().item()
            stats["d_fake"] = fake_scores.mean().item()
        self.sched_g.step()
        self.sched_d.step()
        self.iteration += 1
        stats["lr"] = self.opt_g.param_groups[0]["lr"]
        return stats

    # --- state for checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "iteration": self.iteration,
            "rng_fake": self.rng_fake.get_state(),
            "rng_real": self.rng_real.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.iteration = int(state["iteration"])
        self.rng_fake.set_state(state["rng_fake"])
        self.rng_real.set_state(state["rng_real"])
