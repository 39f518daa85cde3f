"""Losses of the official ``DiracUpdater`` (reference.md §2.3-2.4; paper Eq. 10).

* G: mean(softplus(−D(G(z)))), the non-saturating logistic loss over all concatenated level scores.
* D: mean(softplus(−D(x_real))) + mean(softplus(D(x_fake))): ``discriminator_real_loss`` plus
  ``discriminator_fake_loss`` (the cost accounting of ``tganv2.bench.cost`` differentiates each half alone).
* R1 on real levels, *summed*: λ · Σ_levels Σ_samples Σ_elements (∂ΣD(x_real)/∂x_l)².

λ and the batch (reference §2.4). The official run uses λ = 0.5 summed over a per-GPU batch of 32, with
gradients averaged over 4 GPUs, i.e. an effective 16 × (per-sample mean of Σ_levels‖∇‖²). We keep that
effective strength for any per-device batch B: ``r1_lambda_sum(0.5, 32, B) = 0.5·32/B`` is applied to the
per-device sum, and DDP's gradient averaging over ranks then gives 16 × the mean over the global batch,
for any world size. A single device with batch 128 therefore uses λ_sum = 0.125.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "generator_loss",
    "discriminator_loss",
    "discriminator_real_loss",
    "discriminator_fake_loss",
    "r1_penalty",
    "r1_lambda_sum",
    "full_precision",
]


def full_precision(x: Tensor) -> Tensor:
    """``x`` in fp32 if it is a 16-bit float (bf16 autocast outputs); fp32 and fp64 pass unchanged."""
    return x.float() if x.is_floating_point() and x.element_size() < 4 else x


def generator_loss(fake_scores: Tensor) -> Tensor:
    """Non-saturating G loss; ``fake_scores`` is the concatenated ``(ΣN_l, 1)``."""
    return F.softplus(-fake_scores).mean()


def discriminator_real_loss(real_scores: Tensor) -> Tensor:
    """The real half of the D loss, mean(softplus(−D(x_real))) over the concatenated ``(ΣN_l, 1)``."""
    return F.softplus(-real_scores).mean()


def discriminator_fake_loss(fake_scores: Tensor) -> Tensor:
    """The fake half of the D loss, mean(softplus(D(x_fake))) over the concatenated ``(ΣN_l, 1)``."""
    return F.softplus(fake_scores).mean()


def discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    return discriminator_real_loss(real_scores) + discriminator_fake_loss(fake_scores)


def r1_penalty(real_scores: Tensor, real_levels: list[Tensor], lam: float) -> Tensor:
    """λ · Σ over levels, samples and elements of (∂ΣD/∂x)², with the graph kept for double backward.

    ``real_levels`` must require grad and ``real_scores`` must be computed from them. The output gradient
    is all ones (Chainer's ``chainer.grad`` on a non-scalar output), i.e. the gradient of the sum.
    """
    grads = torch.autograd.grad(real_scores.sum(), real_levels, create_graph=True)
    return lam * sum(full_precision(g).pow(2).sum() for g in grads)


def r1_lambda_sum(r1_lambda: float, reference_batch: int, batch: int) -> float:
    """The λ for a per-device sum over ``batch`` samples that matches λ over ``reference_batch`` (§2.4)."""
    return r1_lambda * reference_batch / batch
