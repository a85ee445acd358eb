"""Off-policy targets, SAC terms and Polyak averaging against hand-computed and independent values."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_pg import (
    clipped_double_q_target,
    gae,
    polyak_update,
    soft_q_target,
    squashed_gaussian_log_prob,
    td_target,
    temperature_loss,
)

F, T = False, True


def test_td_target_hand_computed_termination_cuts_bootstrap():
    r = torch.tensor([1.0, 2.0, 3.0])
    next_q = torch.tensor([10.0, 20.0, 30.0])
    term = torch.tensor([F, T, F])
    y = td_target(r, next_q, gamma=0.9, terminated=term)
    assert torch.allclose(y, torch.tensor([1 + 9.0, 2.0, 3 + 27.0]))
    # no flags: every transition bootstraps
    assert torch.allclose(td_target(r, next_q, gamma=0.5), torch.tensor([6.0, 12.0, 18.0]))


def test_truncation_bootstraps_like_gae_at_lambda_zero():
    """The one-step target of a stored transition equals gae's lam=0 return at that step, with
    the episode cut by a time limit at t=1 (bootstraps from the final obs) and by termination
    at t=3 (does not). gae is the on-policy code path, written independently."""
    r = torch.tensor([[1.0, -2.0, 0.5, 3.0, 1.5]])
    v = torch.tensor([[0.3, 0.7, -1.0, 2.0, 0.1]])
    next_v = torch.tensor([[0.7, 4.0, 2.0, 9.9, 0.8]])  # 4.0 = V(final obs of the cut episode)
    term = torch.tensor([[F, F, F, T, F]])
    trunc = torch.tensor([[F, T, F, F, F]])
    adv, ret = gae(r, v, gamma=0.95, lam=0.0, terminated=term, truncated=trunc, next_values=next_v)
    y = td_target(r, next_v, gamma=0.95, terminated=term)
    assert torch.allclose(y, ret)
    assert y[0, 1] == pytest.approx(-2.0 + 0.95 * 4.0)  # truncated: bootstraps
    assert y[0, 3] == pytest.approx(3.0)  # terminated: 9.9 ignored


def test_clipped_double_q_takes_the_smaller_critic():
    r = torch.tensor([[1.0, 0.0], [0.5, -1.0]])
    q1 = torch.tensor([[4.0, -3.0], [2.0, 7.0]])
    q2 = torch.tensor([[5.0, -4.0], [1.0, 8.0]])
    term = torch.tensor([[F, F], [F, T]])
    y = clipped_double_q_target(r, q1, q2, gamma=0.5, terminated=term)
    assert torch.allclose(y, torch.tensor([[3.0, -2.0], [1.0, -1.0]]))


def test_soft_target_hand_computed():
    r = torch.tensor([1.0, 1.0, 2.0])
    q1 = torch.tensor([5.0, 5.0, -1.0])
    q2 = torch.tensor([3.0, 3.0, 0.0])
    logp = torch.tensor([-1.0, -1.0, 2.0])
    term = torch.tensor([F, T, F])
    y = soft_q_target(r, q1, q2, logp, gamma=0.5, alpha=0.2, terminated=term)
    # 1 + 0.5 * (3 + 0.2);  terminal: 1;  2 + 0.5 * (-1 - 0.4)
    assert torch.allclose(y, torch.tensor([2.6, 1.0, 1.3]))
    # alpha = 0: the clipped double-Q target
    assert torch.equal(
        soft_q_target(r, q1, q2, logp, gamma=0.5, alpha=0.0, terminated=term),
        clipped_double_q_target(r, q1, q2, gamma=0.5, terminated=term),
    )


def test_targets_are_constants():
    q = torch.tensor([1.0, 2.0], requires_grad=True)
    assert not td_target(torch.zeros(2), q * 2, gamma=0.9).requires_grad


def test_temperature_loss_value_and_direction():
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    logp = torch.tensor([-0.2, -0.8], requires_grad=True)  # entropy 0.5 > target -1
    loss = temperature_loss(log_alpha, logp, target_entropy=-1.0)
    assert loss.item() == pytest.approx(-math.log(0.5) * (-0.5 - 1.0))
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(1.5)  # > 0: gradient descent lowers alpha
    assert logp.grad is None  # the policy is not trained through this loss
    low = torch.tensor(0.0, requires_grad=True)  # entropy 2 below target 3: alpha must grow
    temperature_loss(low, torch.tensor([-2.0]), target_entropy=3.0).backward()
    assert low.grad.item() == pytest.approx(-1.0)


def _normal_logpdf(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def test_squashed_log_prob_hand_computed_one_point():
    u, mu, sigma = 0.7, 0.2, 0.5
    expected = _normal_logpdf(u, mu, sigma) - math.log(1 - math.tanh(u) ** 2)
    got = squashed_gaussian_log_prob(
        torch.tensor([[u]], dtype=torch.float64),
        torch.tensor([[mu]], dtype=torch.float64),
        torch.tensor([[math.log(sigma)]], dtype=torch.float64),
    )
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_squashed_log_prob_matches_monte_carlo_density():
    """Histogram of a million tanh(u) samples vs exp(log-prob) at the bin centres."""
    gen = torch.Generator().manual_seed(0)
    mu, sigma, n = 0.3, 0.8, 1_000_000
    a = torch.tanh(mu + sigma * torch.randn(n, generator=gen, dtype=torch.float64))
    edges = torch.linspace(-0.9, 0.9, 37, dtype=torch.float64)  # away from the spikes at +-1
    width = float(edges[1] - edges[0])
    counts = torch.histc(a, bins=36, min=-0.9, max=0.9)
    mc_density = counts / (n * width)
    centres = (edges[:-1] + edges[1:]) / 2
    u = torch.atanh(centres).unsqueeze(-1)
    logp = squashed_gaussian_log_prob(
        u, torch.full_like(u, mu), torch.full_like(u, math.log(sigma))
    )
    # MC std error per bin is about sqrt(p / (n w)) / p ~ 1-3%; bin curvature adds < 1%
    assert torch.allclose(mc_density, logp.exp(), rtol=0.06)
    # and it is a density on (-1, 1): integrates to 1 (midpoint rule in u-space, da = (1-a^2) du)
    grid = torch.linspace(-12, 12, 200_001, dtype=torch.float64).unsqueeze(-1)
    lp = squashed_gaussian_log_prob(
        grid, torch.full_like(grid, mu), torch.full_like(grid, math.log(sigma))
    )
    da = (1 - torch.tanh(grid.squeeze(-1)) ** 2) * float(grid[1] - grid[0])
    assert float((lp.exp() * da).sum()) == pytest.approx(1.0, abs=1e-6)


def test_squashed_log_prob_sums_dims_like_torch_distributions():
    mean = torch.tensor([[0.1, -0.4], [2.0, 0.0]], dtype=torch.float64)
    log_std = torch.tensor([[-0.5, 0.3], [0.0, -1.0]], dtype=torch.float64)
    u = torch.tensor([[0.5, -1.2], [3.0, -2.5]], dtype=torch.float64)
    ref = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), torch.distributions.TanhTransform()
    )
    got = squashed_gaussian_log_prob(u, mean, log_std)
    assert torch.allclose(got, ref.log_prob(torch.tanh(u)).sum(-1), rtol=1e-10)


def test_squashed_log_prob_is_finite_where_tanh_saturates():
    """At |u| = 25, 1 - tanh(u)^2 is 0 in float64; log(sech^2 u) = -2 log cosh u is not."""
    u = torch.tensor([[25.0, -30.0]], dtype=torch.float64, requires_grad=True)
    mean, log_std = torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    got = squashed_gaussian_log_prob(u, mean, log_std)
    expected = sum(
        _normal_logpdf(x, 0.0, 1.0) + 2 * (abs(x) + math.log1p(math.exp(-2 * abs(x))) - math.log(2))
        for x in (25.0, -30.0)
    )
    assert got.item() == pytest.approx(expected, rel=1e-12)
    got.sum().backward()
    assert torch.isfinite(u.grad).all()


def test_polyak_tau_zero_one_and_between():
    src = [torch.tensor([4.0, -2.0]), torch.tensor([[1.0]])]
    tgt = [torch.tensor([0.0, 2.0]), torch.tensor([[3.0]])]
    polyak_update(tgt, src, tau=0.0)
    assert torch.equal(tgt[0], torch.tensor([0.0, 2.0])) and torch.equal(
        tgt[1], torch.tensor([[3.0]])
    )
    polyak_update(tgt, src, tau=0.25)
    assert torch.allclose(tgt[0], torch.tensor([1.0, 1.0])) and torch.allclose(
        tgt[1], torch.tensor([[2.5]])
    )
    odd = [torch.randn(5, 3) for _ in range(2)]
    copy = [torch.zeros(5, 3), torch.full((5, 3), 1e8)]
    polyak_update(copy, odd, tau=1.0)
    assert all(torch.equal(c, s) for c, s in zip(copy, odd))  # bitwise copy, no rounding


def test_polyak_on_module_parameters_leaves_no_graph():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    polyak_update(b.parameters(), a.parameters(), tau=0.5)
    assert all(p.grad_fn is None and p.requires_grad for p in b.parameters())


R = torch.zeros(3)


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda: td_target(R, torch.zeros(3, 1), gamma=0.9), ValueError, "next_q has shape"),
        (lambda: td_target(R, R, gamma=1.2), ValueError, r"gamma must be in \[0, 1\]"),
        (
            lambda: td_target(R, R, gamma=0.9, terminated=torch.zeros(3)),
            TypeError,
            "terminated must have dtype torch.bool",
        ),
        (
            lambda: td_target(R, torch.tensor([0.0, float("nan"), 0.0]), gamma=0.9),
            ValueError,
            r"next_q contains NaN",
        ),
        (lambda: td_target(R.long(), R, gamma=0.9), TypeError, "floating-point"),
        (lambda: clipped_double_q_target(R, R, torch.zeros(2), gamma=0.9), ValueError, "next_q2"),
        (lambda: soft_q_target(R, R, R, R, gamma=0.9, alpha=-0.1), ValueError, "alpha must be"),
        (
            lambda: soft_q_target(R, R, R, torch.zeros(4), gamma=0.9, alpha=0.1),
            ValueError,
            "next_logprobs",
        ),
        (lambda: temperature_loss(torch.zeros(1), R, target_entropy=-1.0), ValueError, "0-d"),
        (
            lambda: temperature_loss(torch.tensor(0.0), R, target_entropy=math.inf),
            ValueError,
            "finite",
        ),
        (
            lambda: squashed_gaussian_log_prob(
                torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2)
            ),
            ValueError,
            "log_std has shape",
        ),
        (lambda: polyak_update([torch.zeros(2)], [], tau=0.5), ValueError, "target has 1 tensors"),
        (
            lambda: polyak_update([torch.zeros(2)], [torch.zeros(3)], tau=0.5),
            ValueError,
            r"source\[0\] has shape",
        ),
        (lambda: polyak_update([torch.zeros(2)], [torch.zeros(2)], tau=1.5), ValueError, "tau"),
    ],
)
def test_bad_input_is_named(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()
