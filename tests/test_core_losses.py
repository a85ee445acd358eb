"""Losses: hand-computed values, gradient identities, aggregation modes."""

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from rlhf_pg import (
    aggregate_loss,
    entropy,
    ppo_clip_loss,
    reinforce_loss,
    value_loss,
)

T = torch.tensor


def test_aggregation_modes_hand_computed():
    loss = T([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = T([[True, True, True], [True, False, False]])
    assert aggregate_loss(loss, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate_loss(loss, mask, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2 / 3)
    assert aggregate_loss(
        loss, mask, "seq-mean-token-sum", norm_constant=5
    ).item() == pytest.approx((6 + 4) / 2 / 5)
    with pytest.raises(ValueError, match="token-mean"):
        aggregate_loss(loss, mask, "sum")


def test_seq_mean_token_mean_skips_empty_rows():
    loss = T([[1.0, 3.0], [7.0, 7.0]])
    mask = T([[True, True], [False, False]])
    assert aggregate_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx(2.0)


def test_reinforce_loss_value_and_gradient():
    logp = T([[-1.0, -2.0]], requires_grad=True)
    w = T([[3.0, -1.0]], requires_grad=True)
    loss = reinforce_loss(logp, w)
    assert loss.item() == pytest.approx(-(-3.0 + 2.0) / 2)
    loss.backward()
    assert torch.allclose(logp.grad, T([[-1.5, 0.5]]))
    assert w.grad is None  # weights are detached


def test_ppo_clip_loss_hand_computed():
    old = T([[0.0, 0.0, 0.0, 0.0]])
    new = torch.log(T([[1.5, 0.5, 1.1, 0.7]]))
    adv = T([[1.0, -1.0, 2.0, 1.0]])
    out = ppo_clip_loss(new, old, adv, clip_eps=0.2)
    # per element: max(-A r, -A clip(r)):
    #   r=1.5, A=1: max(-1.5, -1.2) = -1.2 (clipped)
    #   r=0.5, A=-1: max(0.5, 0.8) = 0.8 (clipped)
    #   r=1.1, A=2: max(-2.2, -2.2) = -2.2
    #   r=0.7, A=1: max(-0.7, -0.8) = -0.7 (unclipped branch active)
    assert out.loss.item() == pytest.approx((-1.2 + 0.8 - 2.2 - 0.7) / 4)
    assert out.clip_fraction.item() == pytest.approx(0.5)
    r = T([1.5, 0.5, 1.1, 0.7])
    assert out.approx_kl.item() == pytest.approx(((r - 1) - r.log()).mean().item(), rel=1e-5)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), B=st.integers(1, 4), Tn=st.integers(1, 6))
def test_ppo_gradient_at_ratio_one_equals_reinforce(seed, B, Tn):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, Tn, generator=g, dtype=torch.float64)
    adv = torch.randn(B, Tn, generator=g, dtype=torch.float64)
    mask = torch.rand(B, Tn, generator=g) < 0.7
    mask[0, 0] = True

    a = logits.clone().requires_grad_(True)
    ppo_clip_loss(a, a.detach(), adv, mask).loss.backward()
    b = logits.clone().requires_grad_(True)
    reinforce_loss(b, adv, mask).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-12)


def test_clipped_elements_contribute_zero_gradient():
    old = torch.zeros(1, 4)
    new = torch.log(T([[1.5, 0.5, 1.1, 0.7]])).requires_grad_(True)
    adv = T([[1.0, -1.0, 2.0, 1.0]])
    ppo_clip_loss(new, old, adv, clip_eps=0.2).loss.backward()
    assert new.grad[0, 0] == 0 and new.grad[0, 1] == 0
    # active unclipped elements: d/dlogp (-A r)/4 = -A r / 4
    assert new.grad[0, 2].item() == pytest.approx(-2 * 1.1 / 4, rel=1e-5)
    assert new.grad[0, 3].item() == pytest.approx(-1 * 0.7 / 4, rel=1e-5)


def test_ppo_asymmetric_clip():
    old = torch.zeros(1, 1)
    new = torch.log(T([[1.25]])).requires_grad_(True)
    out = ppo_clip_loss(new, old, T([[1.0]]), clip_eps=0.2, clip_eps_high=0.3)
    assert out.clip_fraction.item() == 0  # 1.25 is inside [0.8, 1.3]
    assert out.loss.item() == pytest.approx(-1.25)


def test_masked_positions_do_not_affect_ppo_loss():
    new = T([[0.1, float("nan")]])
    old = T([[0.0, 5.0]])
    adv = T([[1.0, float("inf")]])
    out = ppo_clip_loss(new, old, adv, T([[True, False]]))
    assert out.loss.item() == pytest.approx(-math.exp(0.1))
    assert out.clip_fraction.item() == 0


def test_value_loss_unclipped_and_clipped():
    v = T([[1.0, 3.0]], requires_grad=True)
    ret = T([[2.0, 2.0]])
    assert value_loss(v, ret).item() == pytest.approx(0.5 * (1 + 1) / 2)
    old = T([[0.0, 2.0]])
    # elem 0: (1-2)^2=1 ; clipped: 0+clip(1,-.5,.5)=.5 -> (.5-2)^2=2.25 -> 2.25
    # elem 1: (3-2)^2=1 ; clipped: 2+.5=2.5 -> .25 -> 1
    loss = value_loss(v, ret, old_values=old, clip_eps=0.5)
    assert loss.item() == pytest.approx(0.5 * (2.25 + 1) / 2)
    loss.backward()
    # elem 0 takes the clipped branch, whose gradient is zero (clip saturated)
    assert v.grad[0, 0] == 0 and v.grad[0, 1].item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="old_values"):
        value_loss(v, ret, clip_eps=0.5)


def test_entropy_matches_closed_form_and_handles_minus_inf():
    logits = T([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, float("-inf"), float("-inf")]])
    h = entropy(logits)
    assert torch.allclose(h, T([math.log(4), math.log(2)]))
    ref = torch.distributions.Categorical(logits=T([1.0, -2.0, 0.5])).entropy()
    assert entropy(T([1.0, -2.0, 0.5])).item() == pytest.approx(ref.item(), rel=1e-6)


def test_pseudo_loss_gradient_is_the_exact_policy_gradient():
    """Two-step tabular MDP where J(theta) is enumerated exactly. The REINFORCE pseudo-loss,
    averaged over every trajectory weighted by its probability, must have gradient -dJ/dtheta."""
    torch.manual_seed(0)
    n_actions, gamma = 3, 0.9
    theta0 = torch.randn(n_actions, dtype=torch.float64)  # policy at step 0 (state s0)
    theta1 = torch.randn(n_actions, n_actions, dtype=torch.float64)  # step 1, state = a0
    r0 = torch.randn(n_actions, dtype=torch.float64)
    r1 = torch.randn(n_actions, n_actions, dtype=torch.float64)

    def exact_objective(t0, t1):
        p0 = t0.softmax(-1)
        p1 = t1.softmax(-1)
        return sum(
            p0[a] * p1[a, b] * (r0[a] + gamma * r1[a, b])
            for a in range(n_actions)
            for b in range(n_actions)
        )

    t0 = theta0.clone().requires_grad_(True)
    t1 = theta1.clone().requires_grad_(True)
    exact_objective(t0, t1).backward()
    exact = torch.cat([t0.grad, t1.grad.flatten()])

    # enumerate trajectories as a (B, 2) batch; weight each by its probability
    traj = [(a, b) for a in range(n_actions) for b in range(n_actions)]
    s0 = theta0.clone().requires_grad_(True)
    s1 = theta1.clone().requires_grad_(True)
    logp = torch.stack(
        [torch.stack([s0.log_softmax(-1)[a], s1.log_softmax(-1)[a, b]]) for a, b in traj]
    )
    with torch.no_grad():
        prob = torch.stack([theta0.softmax(-1)[a] * theta1.softmax(-1)[a, b] for a, b in traj])
        rewards = torch.stack([torch.stack([r0[a], r1[a, b]]) for a, b in traj])
        from rlhf_pg import discounted_returns

        rtg = discounted_returns(rewards, gamma)
        # the gradient of the discounted objective weights step t by gamma^t * G_t
        rtg = rtg * gamma ** torch.arange(2, dtype=torch.float64)
    # token-sum per trajectory, then probability-weighted sum over the batch
    per_traj = (-(logp * rtg)).sum(dim=1)
    (per_traj * prob).sum().backward()
    pseudo = torch.cat([s0.grad, s1.grad.flatten()])
    assert torch.allclose(-pseudo, exact, atol=1e-12)

    # and the library's own loss gives the same gradient when rows are weighted by probability
    s0.grad = None
    s1.grad = None
    logp2 = torch.stack(
        [torch.stack([s0.log_softmax(-1)[a], s1.log_softmax(-1)[a, b]]) for a, b in traj]
    )
    weights = rtg * prob[:, None] * len(traj)
    loss = reinforce_loss(logp2, weights, aggregation="seq-mean-token-sum", norm_constant=1.0)
    loss.backward()
    assert torch.allclose(-torch.cat([s0.grad, s1.grad.flatten()]), exact, atol=1e-12)


def test_nan_padding_never_leaks_into_gradients():
    logp = T([[-0.5, float("nan")]], requires_grad=True)
    mask = T([[True, False]])
    w = T([[2.0, float("nan")]])
    reinforce_loss(logp, w, mask).backward()
    assert torch.isfinite(logp.grad).all() and logp.grad[0, 1] == 0

    new = T([[-0.5, float("nan")]], requires_grad=True)
    ppo_clip_loss(new, T([[-0.4, float("nan")]]), w, mask).loss.backward()
    assert torch.isfinite(new.grad).all() and new.grad[0, 1] == 0

    v = T([[1.0, float("nan")]], requires_grad=True)
    value_loss(v, w, mask, old_values=T([[0.0, float("inf")]]), clip_eps=0.2).backward()
    assert torch.isfinite(v.grad).all() and v.grad[0, 1] == 0


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_mask_none_fast_path_equals_all_true_mask(mode):
    g = torch.Generator().manual_seed(3)
    new = torch.randn(4, 5, generator=g, requires_grad=True)
    old, adv = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    ones = torch.ones(4, 5, dtype=torch.bool)
    a = ppo_clip_loss(new, old, adv, None, aggregation=mode)
    b = ppo_clip_loss(new, old, adv, ones, aggregation=mode)
    for x, y in zip(a, b):
        assert torch.allclose(x, y)
    ga = torch.autograd.grad(a.loss, new)[0]
    gb = torch.autograd.grad(b.loss, new)[0]
    assert torch.allclose(ga, gb)
    v = value_loss(new, adv, None, old_values=old, clip_eps=0.2, aggregation=mode)
    assert torch.allclose(
        v, value_loss(new, adv, ones, old_values=old, clip_eps=0.2, aggregation=mode)
    )
