"""Losses of the official DiracUpdater: softplus GAN losses in closed form and R1 (Eq. 10) by brute force."""

from __future__ import annotations

import math

import pytest
import torch

from tganv2.losses import discriminator_loss, generator_loss, r1_lambda_sum, r1_penalty
from tganv2.nn.discriminator import MultiLevelDiscriminator

LN3 = math.log(3.0)


def test_generator_loss_closed_form():
    scores = torch.tensor([[0.0], [LN3], [-LN3]], dtype=torch.float64)
    # softplus(-0) = ln 2, softplus(-ln 3) = ln(4/3), softplus(ln 3) = ln 4
    expected = (math.log(2) + math.log(4 / 3) + math.log(4)) / 3
    assert generator_loss(scores).item() == pytest.approx(expected, rel=1e-12)


def test_discriminator_loss_closed_form():
    real = torch.tensor([[0.0], [LN3]], dtype=torch.float64)
    fake = torch.tensor([[LN3], [-LN3], [0.0]], dtype=torch.float64)
    expected = (math.log(2) + math.log(4 / 3)) / 2 + (math.log(4) + math.log(4 / 3) + math.log(2)) / 3
    assert discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-12)


def test_losses_are_stable_for_large_scores():
    assert generator_loss(torch.tensor([[-1000.0]])).item() == pytest.approx(1000.0)
    assert generator_loss(torch.tensor([[1000.0]])).item() == pytest.approx(0.0, abs=1e-12)
    assert discriminator_loss(torch.tensor([[-500.0]]), torch.tensor([[500.0]])).item() == pytest.approx(
        1000.0
    )


def test_level_scores_are_one_mean_over_the_concatenation():
    """With batch subsampling, levels weigh in proportion to their batch sizes (reference §2.2)."""
    level1 = torch.full((4, 1), LN3)
    level2 = torch.full((2, 1), -LN3)
    loss = generator_loss(torch.cat([level1, level2]))
    assert loss.item() == pytest.approx((4 * math.log(4 / 3) + 2 * math.log(4)) / 6, rel=1e-6)
    assert loss.item() != pytest.approx((math.log(4 / 3) + math.log(4)) / 2, rel=1e-3)


def test_r1_lambda_sum():
    assert r1_lambda_sum(0.5, 32, 128) == 0.125
    assert r1_lambda_sum(0.5, 32, 32) == 0.5
    assert r1_lambda_sum(10.0, 32, 8) == 40.0


def _tiny_levels() -> list[torch.Tensor]:
    # (N_l, C, T_l, H_l, W_l): different batch sizes, odd/length-1 time axes, to exercise the padding quirk
    shapes = [(2, 3, 4, 2, 2), (2, 3, 2, 4, 4), (1, 3, 1, 4, 4)]
    return [torch.randn(s, dtype=torch.float64) for s in shapes]


def test_r1_matches_brute_force_finite_differences():
    """λ · Σ_levels Σ_samples Σ_elements (∂ΣD/∂x)², every element's derivative by central differences."""
    disc = MultiLevelDiscriminator(n_levels=3, in_channels=3, ch=2).double()
    levels = _tiny_levels()
    lam = 0.37

    def total(xs):
        return disc(xs).sum().item()

    eps = 1e-6
    squares = 0.0
    for x in levels:
        flat = x.view(-1)
        for i in range(flat.numel()):
            saved = flat[i].item()
            flat[i] = saved + eps
            plus = total(levels)
            flat[i] = saved - eps
            minus = total(levels)
            flat[i] = saved
            squares += ((plus - minus) / (2 * eps)) ** 2

    inputs = [x.clone().requires_grad_(True) for x in levels]
    penalty = r1_penalty(disc(inputs), inputs, lam)
    assert penalty.item() == pytest.approx(lam * squares, rel=1e-5)


def test_r1_is_a_sum_over_samples_not_a_mean():
    """Duplicating every sample doubles the penalty (summed over the batch, Eq. 10)."""
    disc = MultiLevelDiscriminator(n_levels=3, in_channels=3, ch=2).double()
    levels = _tiny_levels()
    single = [x.clone().requires_grad_(True) for x in levels]
    double = [torch.cat([x, x]).requires_grad_(True) for x in levels]
    p1 = r1_penalty(disc(single), single, 1.0)
    p2 = r1_penalty(disc(double), double, 1.0)
    assert p2.item() == pytest.approx(2 * p1.item(), rel=1e-6)


def test_r1_keeps_the_graph_for_double_backward():
    disc = MultiLevelDiscriminator(n_levels=3, in_channels=3, ch=2)
    inputs = [x.float().requires_grad_(True) for x in _tiny_levels()]
    penalty = r1_penalty(disc(inputs), inputs, 0.5)
    assert penalty.requires_grad
    penalty.backward()
    grads = [p.grad for p in disc.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
