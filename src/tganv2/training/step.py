"""One training iteration of the official ``DiracUpdater`` (reference.md §2.3-2.4, §4.1).

Order inside an iteration (n_dis = 1):
  1. draw a real batch, make its levels with S^D, compute D(real);
  2. draw z, generate the fake levels, compute D(fake);
  3. update G first, using that D(fake);
  4. detach the fakes (Chainer's ``unchain_backward``);
  5. update D with the *same* fake scores (computed before G's update) plus R1 on the real levels.
With ``train.r1_every=k > 1`` R1 is applied on every k-th D step only (D steps 1, k+1, 2k+1, … counted
from 1 over the whole run, so a resume keeps the rhythm), with λ·k; the other steps skip its gradient and
double backward, and their reals need no gradient.
With n_dis > 1, G is updated on the first inner step only; every inner step draws fresh reals and z.

Step 4 is done without a second D forward: D runs once on detached copies of the fakes; the G loss is
differentiated with respect to those copies only, and that image gradient is pushed into G. D's graph is
kept and reused for the D loss, exactly as the official code reuses the fake scores.

Adam, as Chainer 6 runs it (the default, ``train.adam_eps_convention=chainer``):
    p ← p − α·√(1−β2^t)/(1−β1^t) · m/(√v + ε)          (ε outside the bias correction)
torch's Adam computes lr·m̂/(√v̂ + ε) with m̂ = m/(1−β1^t), v̂ = v/(1−β2^t), which is
    p ← p − lr·√(1−β2^t)/(1−β1^t) · m/(√v + ε·√(1−β2^t)),
so torch's effective ε is √(1−β2^t) × Chainer's (0.316× at t = 1 with β2 = 0.9). Before each step the
group's eps is set to ε/√(1−β2^t) (a Python float from the Python step count: no device read), which
makes torch's fused Adam apply Chainer's update exactly; ``adam_eps_convention=torch`` keeps ε as given.

No host syncs on an ordinary iteration. Every random choice is drawn before the forward: the subsampling
offsets and crops from two numpy Generators (fakes: one per batch; reals: one per sample), z from a torch
Generator on the model's device. Losses and statistics accumulate on the device; ``read_stats`` reads them
(one sync) every ``log_every`` iterations. The divergence guard is a device-side found-inf flag: if any
gradient or loss of the iteration is non-finite, the flag is set, and the fused Adams (``found_inf``, as
``GradScaler`` uses them) skip this and every later update. The flag is read with the statistics and at
checkpoint time (``check_healthy``), where the run stops (``TrainingDiverged``, in ``loop.py``).

Multi-process: gradients are all-reduce *averaged* over ranks (ChainerMN's multi-node optimiser) and the
generator's BatchNorms are SyncBatchNorm. ``GradientAverager`` reduces buckets during the backward rather
than wrapping in DDP, because the step differentiates D several times (image gradients, R1's double
backward).

Resumable state has one owner: ``Trainer.state_dict`` holds the models, optimisers, schedules, iteration
and the random streams of every rank (and the process-global RNGs), ``load_state_dict`` restores them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..config import Config, build_discriminator, build_generator
from ..data.base import to_float
from ..data.multilevel import real_levels_from_config
from ..errors import UserError
from ..losses import discriminator_loss, full_precision, generator_loss, r1_lambda_sum, r1_penalty
from ..nn.subsample import LayerDraw, batch_reductions, subsample_batch
from .checkpoint import capture_rng, restore_rng
from .distributed import GradientAverager, all_gather_objects, is_multi_process
from .layout import match_state_layouts, to_channels_last

__all__ = [
    "Trainer",
    "make_optimizer",
    "adam_eps",
    "adam_step",
    "linear_decay",
    "real_levels",
    "real_batch_to_device",
    "discriminate",
    "STATS",
]

# (clips (B, C, T, S, S): uint8 from the loader, or float in [-1, 1]; labels (B,) or None)
RealBatch = tuple[Tensor, Tensor | None]

# Statistics accumulated on the device: their order in the accumulator
STATS = ("loss_gen", "loss_dis", "loss_gp", "d_real", "d_fake")
_CLEAN = len(STATS)  # accumulator slot: iterations of this window that ended with the flag clear


def make_optimizer(module: nn.Module, cfg: Config, lr: float | None = None) -> torch.optim.Adam:
    """Adam(1e-4, β = (0, 0.9), eps 8e-8), as both official optimisers (``lr``, if given, replaces
    train.lr); fused (step counters are device tensors, and it takes ``found_inf``). The eps convention is
    applied per step by ``adam_eps``. A loaded state's moments take their weights' strides
    (``match_state_layouts``: a CPU checkpoint resumed on CUDA, where the weights are channels-last)."""
    t = cfg.train
    lr = t.lr if lr is None else lr
    optimizer = torch.optim.Adam(module.parameters(), lr=lr, betas=tuple(t.betas), eps=t.adam_eps, fused=True)
    optimizer.register_load_state_dict_post_hook(match_state_layouts)
    return optimizer


def adam_eps(eps: float, beta2: float, t: int, convention: str) -> float:
    """The eps that makes torch's Adam at step ``t`` (1-based) apply ``convention``'s update (see above)."""
    return eps / math.sqrt(1.0 - beta2**t) if convention == "chainer" else eps


def adam_step(optimizer: torch.optim.Adam, t: int, cfg: Config) -> None:
    """Adam step ``t`` (1-based: the optimiser's own count after this step) in ``cfg``'s eps convention."""
    train = cfg.train
    for group in optimizer.param_groups:
        group["eps"] = adam_eps(train.adam_eps, group["betas"][1], t, train.adam_eps_convention)
    optimizer.step()


def linear_decay(iterations: int, start: float = 0.0) -> Callable[[int], float]:
    """The lr multiplier: 1 until ``start`` · ``iterations``, then Chainer's ``LinearShift`` to 0 at
    ``iterations`` (``start`` 0, the official schedule: the decay begins at iteration 0)."""
    first = start * iterations  # the last iteration at the full lr
    return lambda it: 1.0 if it <= first else max(0.0, 1.0 - (it - first) / (iterations - first))


def real_levels(clips: Tensor, cfg: Config, draws: list[LayerDraw]) -> list[Tensor]:
    """S^D: the real level videos, through the same subsampling code as the generator (§3.3)."""
    return real_levels_from_config(clips, cfg.model, draws=draws)


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


def _stream_seed(seed: int, stream: int) -> list[int]:
    return [seed % 2**63, stream]


class Trainer:
    """G, D, their optimisers and lr schedules, the random streams, and the official update rule."""

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
        self.opt_d = make_optimizer(self.discriminator, cfg, cfg.train.lr_d)
        decay = linear_decay(cfg.train.iterations, cfg.train.lr_decay_start)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.joint_d_pass = cfg.train.d_joint_pass  # one D pass over reals and fakes (see discriminate)
        self.r1_lambda = r1_lambda_sum(cfg.train.r1_lambda, cfg.train.r1_reference_batch, cfg.train.batch)
        self.r1_lambda *= cfg.train.r1_every  # lazy R1: λ·k on every k-th D step (0: R1 off)
        self.iteration = 0
        # Random streams: z (torch, on the device: no copy); the fakes' and the reals' subsampling draws
        self.rng_z = torch.Generator(self.device).manual_seed(seed * 1000 + 1)
        self.rng_fake = np.random.default_rng(_stream_seed(seed, 1))
        self.rng_real = np.random.default_rng(_stream_seed(seed, 2))
        # Divergence guard: 1.0 once any gradient or loss was non-finite; the fused Adams then skip
        self.found_inf = torch.zeros((), dtype=torch.float32, device=self.device)
        self._one = torch.ones((), dtype=torch.float32, device=self.device)
        self.opt_g.found_inf = self.opt_d.found_inf = self.found_inf
        self._sums = torch.zeros(len(STATS) + 1, dtype=torch.float64, device=self.device)
        self._window_start = 0  # iteration at which the statistics' accumulation restarted

    def sample_z(self, batch: int) -> Tensor:
        """z ~ U(−1, 1)^(batch × z_dim) from the z stream, drawn on the model's device."""
        return self.generator.make_z(batch, generator=self.rng_z, device=self.device)

    def _draws(self, batch: int, per_sample: bool) -> list[LayerDraw]:
        """This step's subsampling choices: shared ints for the fakes, per-sample tensors for the reals."""
        rng = self.rng_real if per_sample else self.rng_fake
        draws = self.cfg.model.layer_draws(batch, rng, reals=per_sample)
        if not per_sample or self.device.type == "cpu":
            return draws
        return [LayerDraw(self._to_device(d.frame_offset), self._to_device(d.crop_origin)) for d in draws]

    def _to_device(self, value):
        """A per-sample draw (CPU LongTensor) to the device from pinned memory, without blocking the host."""
        if not isinstance(value, Tensor):
            return value
        return value.pin_memory().to(self.device, non_blocking=True)

    def _autocast(self):
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _level_labels(self, labels: Tensor | None) -> list[Tensor] | None:
        """Per-level labels after the cumulative batch strides (only for class-conditional models)."""
        if labels is None or self.cfg.model.n_classes == 0:
            return None
        return [subsample_batch(labels, r) for r in batch_reductions(self.cfg.model.batch_strides)]

    def _flag_non_finite(self, tensors: list[Tensor]) -> None:
        """Set ``found_inf`` if any entry of ``tensors`` is non-finite (on the device, no sync)."""
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():  # multiplies by 1.0 in place: the values are unchanged
            torch._amp_foreach_non_finite_check_and_unscale_(group, self.found_inf, self._one)

    def _adam_step(self, optimizer: torch.optim.Adam, module: nn.Module, t: int, extra: Tensor) -> None:
        """Check ``module``'s gradients and ``extra`` for non-finite values, then Adam step ``t``."""
        self._flag_non_finite([p.grad for p in module.parameters() if p.grad is not None] + [extra])
        adam_step(optimizer, t, self.cfg)

    def step(self, next_real: Callable[[], RealBatch]) -> None:
        """One iteration; ``next_real()`` returns a real batch ``(clips (B, C, T, S, S), labels)``.

        Nothing is read back to the host: use ``read_stats`` for the losses.
        """
        cfg, G, D = self.cfg, self.generator, self.discriminator
        n_dis = cfg.train.n_dis
        for inner in range(n_dis):
            clips, labels = real_batch_to_device(*next_real(), self.device, cfg.model.n_classes)
            batch = clips.shape[0]
            d_step = self.iteration * n_dis + inner + 1  # D's Adam step, 1-based over the run
            with_r1 = self.r1_lambda > 0 and (d_step - 1) % cfg.train.r1_every == 0
            # 1. reals: S^D levels, leaves that require grad for R1
            real_draws = self._draws(batch, per_sample=True)
            reals = [x.detach().requires_grad_(with_r1) for x in real_levels(clips, cfg, real_draws)]
            # 2. fakes: z ~ U(-1, 1); the same labels as the reals for conditional models
            z = self.sample_z(batch)
            fake_draws = self._draws(batch, per_sample=False)
            update_g = inner == 0
            with self._autocast(), torch.set_grad_enabled(update_g):
                fakes = self.generator_forward(z, labels, draws=fake_draws)
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
                loss_gen = loss_gen.detach().reshape(1).clone()  # (1,)
                self._adam_step(self.opt_g, G, self.iteration + 1, loss_gen)
                self._sums[:1].add_(loss_gen)
            # 4-5. D with the same fake scores, plus R1 (summed, λ scaled to the per-device batch)
            loss_dis = discriminator_loss(real_scores, fake_scores)
            loss_gp = r1_penalty(real_scores, reals, self.r1_lambda) if with_r1 else loss_dis.new_zeros(())
            self.opt_d.zero_grad(set_to_none=True)
            # only D's parameters: the image gradients of reals and fakes are not needed here
            with self.grad_sync_d:
                (loss_dis + loss_gp).backward(inputs=list(D.parameters()))
            d_stats = torch.stack([loss_dis, loss_gp, real_scores.mean(), fake_scores.mean()]).detach()
            self._adam_step(self.opt_d, D, d_step, d_stats)
            self._sums[1:_CLEAN].add_(d_stats)
        self._sums[_CLEAN:].sub_(self.found_inf).add_(1.0)
        self.sched_g.step()
        self.sched_d.step()
        self.iteration += 1

    # --- reads: at log and checkpoint time only ----------------------------------------------------------
    def read_stats(self) -> dict[str, float]:
        """Means of the statistics since the last read, the lr, and the divergence flag (one device read).

        ``diverged`` is 1.0 once a non-finite gradient or loss was found (on any rank); ``diverged_at`` is
        then the first such iteration. The accumulators restart; the flag stays set.
        """
        flag = self.found_inf.reshape(1).to(torch.float64)
        if is_multi_process():
            flag = flag.clone()
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        values = torch.cat([self._sums, flag]).tolist()
        start = self._window_start
        n_g = self.iteration - start
        n_d = n_g * self.cfg.train.n_dis
        stats = {"loss_gen": values[0] / max(n_g, 1)}
        stats.update({k: v / max(n_d, 1) for k, v in zip(STATS[1:], values[1:_CLEAN])})
        stats["lr"] = self.opt_g.param_groups[0]["lr"]
        stats["diverged"] = values[-1]
        if values[-1]:
            stats["diverged_at"] = start + int(values[_CLEAN]) + 1
        self._sums.zero_()
        self._window_start = self.iteration
        return stats

    def check_healthy(self) -> str | None:
        """Why the current weights must not be saved, or None if they are good (a few device reads).

        Good: no non-finite gradient or loss so far, every weight and buffer finite, and the generator
        renders finite, non-constant videos (eval mode, as ``tganv2 generate``, from a fixed z). With
        several ranks, rank 0's verdict holds for all (all ranks must call it).
        """
        flag = self.found_inf.reshape(1).clone()
        if is_multi_process():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        problem = "a non-finite gradient or loss" if flag.item() else self._weights_problem()
        return all_gather_objects(problem)[0] if is_multi_process() else problem

    def _weights_problem(self) -> str | None:
        for name, module in (("generator", self.generator), ("discriminator", self.discriminator)):
            tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
            if not torch.stack([torch.isfinite(t).all() for t in tensors]).all().item():
                return f"non-finite {name} weights"
        G = self.generator
        was_training = G.training
        G.eval()
        try:
            z_stream = torch.Generator(self.device).manual_seed(0)
            z = G.make_z(2, generator=z_stream, device=self.device)
            y = torch.arange(2, device=self.device) % G.n_classes if G.n_classes else None
            with torch.no_grad():
                videos = G(z, y)  # (2, C, T, H, W)
        finally:
            G.train(was_training)
        low, high = torch.stack([videos.amin(), videos.amax()]).tolist()
        if not (math.isfinite(low) and math.isfinite(high)):
            return "a generator that renders non-finite videos"
        if high - low < 2 / 255:
            return "a generator that renders constant videos"
        return None

    # --- state for checkpoints -------------------------------------------------------------------
    def _rank_state(self) -> dict:
        """This rank's random streams and the process-global RNGs."""
        return {
            "rng_z": self.rng_z.get_state(),
            "rng_fake": self.rng_fake.bit_generator.state,
            "rng_real": self.rng_real.bit_generator.state,
            "global_rng": capture_rng(),
        }

    def state_dict(self) -> dict:
        """Everything a bit-exact resume needs, every rank's streams included (all ranks must call it)."""
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "iteration": self.iteration,
            "ranks": all_gather_objects(self._rank_state()),  # [rank] → its streams
        }

    def load_state_dict(self, state: dict, rank: int = 0) -> None:
        """Restore ``state_dict``; ``rank`` picks this process's streams (a new rank keeps its seeds)."""
        if "ranks" not in state:
            raise UserError("checkpoint written by an older tganv2 (no random streams); start a new --out")
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.iteration = int(state["iteration"])
        self._window_start = self.iteration
        if rank < len(state["ranks"]):
            streams = state["ranks"][rank]
            self.rng_z.set_state(streams["rng_z"])
            self.rng_fake.bit_generator.state = streams["rng_fake"]
            self.rng_real.bit_generator.state = streams["rng_real"]
            restore_rng(streams["global_rng"])
