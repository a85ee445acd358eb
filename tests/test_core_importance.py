"""Importance weights, effective sample size and the PPO KL-penalty loss of the core."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_pg.core import (
    effective_sample_size,
    ppo_kl_penalty_loss,
    reinforce_loss,
    step_ratios,
    trajectory_log_weights,
)


def test_weights_of_a_policy_with_itself_are_exactly_one():
    logp = torch.randn(5, 7)
    mask = torch.rand(5, 7) > 0.3
    assert bool((step_ratios(logp, logp.clone(), mask) == 1).all())
    lw = trajectory_log_weights(logp, logp.clone(), mask)
    assert bool((lw == 0).all())
    assert effective_sample_size(lw).item() == pytest.approx(5.0, abs=1e-6)


def test_trajectory_weight_is_the_product_of_probability_ratios_over_valid_steps():
    p_new = torch.tensor([[0.5, 0.25, 0.9], [0.2, 0.7, 0.1]], dtype=torch.float64)
    p_old = torch.tensor([[0.25, 0.5, 0.3], [0.4, 0.7, 0.5]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    lw = trajectory_log_weights(p_new.log(), p_old.log(), mask)
    # row 0: 2 * 0.5 * 3 = 3; row 1: 0.5 * 1 (the masked third step does not count)
    assert torch.allclose(lw.exp(), torch.tensor([3.0, 0.5], dtype=torch.float64))
    rho = step_ratios(p_new.log(), p_old.log(), mask)
    assert torch.allclose(rho[0], torch.tensor([2.0, 0.5, 3.0], dtype=torch.float64))
    assert rho[1, 2].item() == 1.0


def test_effective_sample_size_matches_kish_and_survives_huge_log_weights():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    kish = w.sum() ** 2 / (w**2).sum()  # 100 / 30
    assert effective_sample_size(w.log()).item() == pytest.approx(kish.item())
    assert effective_sample_size(w.log() + 800.0).item() == pytest.approx(kish.item())
    one = effective_sample_size(torch.tensor([0.0, 50.0, 0.0]))
    assert one.item() == pytest.approx(1.0, abs=1e-9)


def test_kl_penalty_loss_value_and_gradient():
    old = torch.tensor([[-1.0, -2.0]])
    new = torch.tensor([[-0.9, -2.0]], requires_grad=True)
    adv = torch.tensor([[2.0, -1.0]])
    out = ppo_kl_penalty_loss(new, old, adv, kl_coef=0.5)
    r = math.exp(0.1)
    surrogate = (-2.0 * r + 1.0) / 2
    kl = ((r - 1) - 0.1 + 0.0) / 2
    assert out.loss.item() == pytest.approx(surrogate + 0.5 * kl, rel=1e-6)
    assert out.approx_kl.item() == pytest.approx(kl, rel=1e-4)  # float32: (r - 1) - log r cancels
    out.loss.backward()
    # d/dlogp of [-A r + beta((r - 1) - log r)] / 2 = [-A r + beta (r - 1)] / 2
    expected = torch.tensor([[(-2.0 * r + 0.5 * (r - 1)) / 2, (1.0 * 1 + 0.0) / 2]])
    assert torch.allclose(new.grad, expected, atol=1e-6)


def test_kl_penalty_gradient_at_the_old_policy_is_the_reinforce_gradient():
    logits = torch.randn(3, 4, requires_grad=True)
    adv = torch.randn(3, 4)
    old = logits.detach().clone()
    ppo_kl_penalty_loss(logits, old, adv, kl_coef=3.0).loss.backward()
    g_penalty = logits.grad.clone()
    logits.grad = None
    reinforce_loss(logits, adv).backward()
    assert torch.allclose(g_penalty, logits.grad, atol=1e-7)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="kl_coef"):
        ppo_kl_penalty_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), kl_coef=-1.0)
    with pytest.raises(ValueError, match="behaviour_logprobs"):
        step_ratios(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="log_weights"):
        effective_sample_size(torch.zeros(2, 2))
