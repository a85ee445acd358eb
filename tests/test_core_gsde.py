"""gSDE math against a hand-computed case, Monte-Carlo draws of W, and torch.distributions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from rlhf_pg import gsde_log_std, gsde_noise, squashed_gaussian_log_prob


def test_log_std_hand_computed():
    # theta = (1, 2), sigma = (1, 3) for action 0 and (2, 0.5) for action 1:
    # var_0 = 1*1 + 4*9 = 37, var_1 = 1*4 + 4*0.25 = 5
    features = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    log_std = torch.tensor([[0.0, math.log(2.0)], [math.log(3.0), math.log(0.5)]])
    out = gsde_log_std(features, log_std, eps=0.0)
    assert out[0].tolist() == pytest.approx([0.5 * math.log(37.0), 0.5 * math.log(5.0)])
    # all features off: the variance floor keeps the log finite
    floored = gsde_log_std(features, log_std, eps=1e-6)
    assert floored[1].tolist() == pytest.approx([0.5 * math.log(1e-6)] * 2)
    expected = [0.5 * math.log(37.0 + 1e-6), 0.5 * math.log(5.0 + 1e-6)]
    assert floored[0].tolist() == pytest.approx(expected)


def test_noise_variance_matches_monte_carlo_over_matrices():
    """theta(s)^T W over many independent W ~ N(0, sigma^2): its per-state variance is
    exp(2 gsde_log_std) and its mean 0."""
    g = torch.Generator().manual_seed(0)
    features = torch.randn(3, 5, generator=g, dtype=torch.float64)
    log_std = 0.5 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    n = 200_000
    w = torch.exp(log_std) * torch.randn(n, 5, 2, generator=g, dtype=torch.float64)
    for i in range(3):  # the same state under n different matrices
        noise = gsde_noise(features[i].expand(n, 5), w)
        expected_var = torch.exp(2 * gsde_log_std(features[i : i + 1], log_std, eps=0.0))[0]
        torch.testing.assert_close(noise.var(0), expected_var, rtol=0.02, atol=0.0)
        assert (noise.mean(0).abs() < 4 * (expected_var / n).sqrt()).all()


def test_noise_uses_each_rows_own_matrix():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(4, 3, generator=g)
    w = torch.randn(4, 3, 2, generator=g)
    expected = torch.stack([features[i] @ w[i] for i in range(4)])
    torch.testing.assert_close(gsde_noise(features, w), expected)


def test_squashed_log_prob_under_the_state_dependent_gaussian_matches_torch():
    """log pi(tanh u | s) with the gSDE std, against torch's Normal(mean, sqrt(var)) pushed
    through TanhTransform, and against Normal.log_prob minus log(1 - tanh^2)."""
    g = torch.Generator().manual_seed(2)
    features = torch.relu(torch.randn(6, 4, generator=g, dtype=torch.float64))
    log_std = -1.0 + 0.3 * torch.randn(4, 2, generator=g, dtype=torch.float64)
    mean = torch.randn(6, 2, generator=g, dtype=torch.float64)
    std = (features.pow(2) @ torch.exp(2 * log_std) + 1e-6).sqrt()  # written out, not via gsde
    u = mean + std * torch.randn(6, 2, generator=g, dtype=torch.float64)
    ours = squashed_gaussian_log_prob(u, mean, gsde_log_std(features, log_std))
    base = Normal(mean, std)
    by_hand = (base.log_prob(u) - torch.log1p(-torch.tanh(u).pow(2))).sum(-1)
    pushed = TransformedDistribution(base, [TanhTransform()]).log_prob(torch.tanh(u)).sum(-1)
    torch.testing.assert_close(ours, by_hand)
    torch.testing.assert_close(ours, pushed, rtol=1e-6, atol=1e-6)


def test_gradients_reach_features_and_log_std():
    features = torch.tensor([[0.5, -1.0]], requires_grad=True)
    log_std = torch.zeros(2, 1, requires_grad=True)
    gsde_log_std(features, log_std).sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert log_std.grad is not None and log_std.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("call", "exc", "pattern"),
    [
        (
            lambda: gsde_log_std(torch.ones(3), torch.zeros(3, 1)),
            ValueError,
            "features must have 2",
        ),
        (lambda: gsde_log_std(torch.ones(2, 3), torch.zeros(3)), ValueError, "log_std must have 2"),
        (
            lambda: gsde_log_std(torch.ones(2, 3), torch.zeros(4, 1)),
            ValueError,
            "log_std has 4 rows",
        ),
        (
            lambda: gsde_log_std(torch.ones(2, 3), torch.zeros(3, 1), eps=-1.0),
            ValueError,
            "eps must be >= 0",
        ),
        (
            lambda: gsde_log_std(torch.ones(2, 3), torch.full((3, 1), float("nan"))),
            ValueError,
            "log_std contains NaN",
        ),
        (
            lambda: gsde_log_std(torch.ones(2, 3, dtype=torch.long), torch.zeros(3, 1)),
            TypeError,
            "floating",
        ),
        (
            lambda: gsde_noise(torch.ones(2, 3), torch.zeros(3, 1)),
            ValueError,
            "exploration_matrices must have 3",
        ),
        (
            lambda: gsde_noise(torch.ones(2, 3), torch.zeros(1, 3, 1)),
            ValueError,
            r"expected \(2, 3, actions\)",
        ),
        (
            lambda: gsde_noise([[1.0]], torch.zeros(1, 1, 1)),
            TypeError,
            "features must be a torch.Tensor",
        ),
    ],
)
def test_bad_input_is_one_clear_error(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()
