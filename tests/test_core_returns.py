"""discounted_returns and gae: hand-computed cases, identities, padding, and a cross-check."""

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from rlhf_pg import discounted_returns, gae

T = torch.tensor


def test_discounted_returns_hand_computed():
    r = T([[1.0, 2.0, 3.0]])
    # G2 = 3, G1 = 2 + 0.5*3 = 3.5, G0 = 1 + 0.5*3.5 = 2.75
    assert torch.allclose(discounted_returns(r, 0.5), T([[2.75, 3.5, 3.0]]))


def test_discounted_returns_episode_boundary_and_bootstrap():
    r = T([[1.0, 1.0, 1.0, 1.0]])
    dones = T([[False, True, False, False]])
    out = discounted_returns(r, 0.5, dones=dones, bootstrap_value=T([4.0]))
    # second episode: G3 = 1 + 0.5*4 = 3, G2 = 1 + 1.5 = 2.5; first: G1 = 1, G0 = 1.5
    assert torch.allclose(out, T([[1.5, 1.0, 2.5, 3.0]]))


def test_gae_termination_vs_truncation_hand_computed():
    rewards = T([[1.0, 1.0, 1.0]])
    values = T([[2.0, 3.0, 5.0]])
    next_values = T([[3.0, 10.0, 7.0]])  # 10 = V(final obs) of the first episode
    gamma, lam = 0.9, 0.5

    term = T([[False, True, False]])
    adv_term, ret_term = gae(
        rewards, values, gamma=gamma, lam=lam, terminated=term, next_values=next_values
    )
    # t=2: delta = 1 + .9*7 - 5 = 2.3 ; t=1 terminal: delta = 1 - 3 = -2 ; t=0: 1 + 2.7 - 2 = 1.7
    d2, d1, d0 = 2.3, -2.0, 1.7
    expected = T([[d0 + gamma * lam * d1, d1, d2]])
    assert torch.allclose(adv_term, expected)
    assert torch.allclose(ret_term, expected + values)

    trunc = T([[False, True, False]])
    adv_trunc, _ = gae(
        rewards, values, gamma=gamma, lam=lam, truncated=trunc, next_values=next_values
    )
    # truncated: bootstrap from V(final obs)=10 but the recursion still stops
    d1 = 1 + 0.9 * 10 - 3.0
    expected = T([[d0 + gamma * lam * d1, d1, d2]])
    assert torch.allclose(adv_trunc, expected)


def test_gae_default_next_values_and_bootstrap():
    rewards = T([[0.0, 0.0, 1.0]])
    values = T([[0.5, 0.6, 0.7]])
    adv, _ = gae(rewards, values, gamma=1.0, lam=0.0, bootstrap_value=T([2.0]))
    assert torch.allclose(adv, T([[0.6 - 0.5, 0.7 - 0.6, 1.0 + 2.0 - 0.7]]))


def test_gae_padding_hand_computed():
    # a left-padded row and a right-padded row give the same valid outputs as unpadded rows
    rewards = T([[9.0, 1.0, 2.0], [1.0, 2.0, 9.0]])
    values = T([[9.0, 0.5, 0.25], [0.5, 0.25, 9.0]])
    mask = T([[False, True, True], [True, True, False]])
    adv, ret = gae(rewards, values, gamma=0.9, lam=0.8, mask=mask)
    ref_adv, ref_ret = gae(T([[1.0, 2.0]]), T([[0.5, 0.25]]), gamma=0.9, lam=0.8)
    assert torch.allclose(adv[0, 1:], ref_adv[0]) and torch.allclose(adv[1, :2], ref_adv[0])
    assert torch.allclose(ret[0, 1:], ref_ret[0])
    assert adv[0, 0] == 0 and adv[1, 2] == 0 and ret[1, 2] == 0


def test_gae_truncation_requires_next_values():
    with pytest.raises(ValueError, match="next_values"):
        gae(
            T([[1.0, 1.0]]),
            T([[0.0, 0.0]]),
            gamma=0.9,
            lam=0.9,
            truncated=T([[True, False]]),
        )


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Independent reference: split each row into episodes, then solve each episode
    with the lam-return definition A_t = sum_k (gamma*lam)^k delta_{t+k} in a double loop."""
    B, Tn = rewards.shape
    adv = torch.zeros(B, Tn, dtype=torch.float64)
    for b in range(B):
        episodes, start = [], 0
        for t in range(Tn):
            if terminated[b, t] or truncated[b, t] or t == Tn - 1:
                episodes.append((start, t))
                start = t + 1
        for s, e in episodes:
            deltas = []
            for t in range(s, e + 1):
                nv = 0.0 if terminated[b, t] else float(next_values[b, t])
                deltas.append(float(rewards[b, t]) + gamma * nv - float(values[b, t]))
            for i, t in enumerate(range(s, e + 1)):
                adv[b, t] = sum((gamma * lam) ** k * d for k, d in enumerate(deltas[i:]))
    return adv


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    B=st.integers(1, 4),
    Tn=st.integers(1, 12),
    gamma=st.floats(0.0, 1.0),
    lam=st.floats(0.0, 1.0),
)
def test_gae_matches_per_episode_reference(seed, B, Tn, gamma, lam):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(B, Tn, generator=g, dtype=torch.float64)
    values = torch.randn(B, Tn, generator=g, dtype=torch.float64)
    next_values = torch.randn(B, Tn, generator=g, dtype=torch.float64)
    ends = torch.rand(B, Tn, generator=g) < 0.3
    kind = torch.rand(B, Tn, generator=g) < 0.5
    terminated, truncated = ends & kind, ends & ~kind
    adv, ret = gae(
        rewards,
        values,
        gamma=gamma,
        lam=lam,
        terminated=terminated,
        truncated=truncated,
        next_values=next_values,
    )
    ref = reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    assert torch.allclose(adv, ref, atol=1e-9)
    assert torch.allclose(ret, ref + values, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), Tn=st.integers(1, 10), gamma=st.floats(0.0, 1.0))
def test_gae_lambda_identities(seed, Tn, gamma):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(3, Tn, generator=g, dtype=torch.float64)
    values = torch.randn(3, Tn, generator=g, dtype=torch.float64)
    boot = torch.randn(3, generator=g, dtype=torch.float64)
    dones = torch.rand(3, Tn, generator=g) < 0.25
    next_values = torch.cat([values[:, 1:], boot[:, None]], dim=1)

    adv0, _ = gae(rewards, values, gamma=gamma, lam=0.0, terminated=dones, bootstrap_value=boot)
    td = rewards + gamma * next_values * (~dones) - values
    assert torch.allclose(adv0, td, atol=1e-9)

    adv1, ret1 = gae(rewards, values, gamma=gamma, lam=1.0, terminated=dones, bootstrap_value=boot)
    mc = discounted_returns(rewards, gamma, dones=dones, bootstrap_value=boot)
    assert torch.allclose(adv1, mc - values, atol=1e-9)
    assert torch.allclose(ret1, mc, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    Tn=st.integers(1, 8),
    pad_positions=st.lists(st.integers(0, 8), max_size=5),
    gamma=st.floats(0.0, 1.0),
    lam=st.floats(0.0, 1.0),
)
def test_padding_never_changes_valid_outputs(seed, Tn, pad_positions, gamma, lam):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(2, Tn, generator=g, dtype=torch.float64)
    values = torch.randn(2, Tn, generator=g, dtype=torch.float64)
    dones = torch.rand(2, Tn, generator=g) < 0.3
    boot = torch.randn(2, generator=g, dtype=torch.float64)
    base_adv, base_ret = gae(
        rewards, values, gamma=gamma, lam=lam, terminated=dones, bootstrap_value=boot
    )
    base_g = discounted_returns(rewards, gamma, dones=dones, bootstrap_value=boot)

    # insert garbage (NaN!) columns at arbitrary places, masked out
    keep = list(range(Tn))
    for p in sorted(pad_positions, reverse=True):
        keep.insert(min(p, len(keep)), -1)
    idx = torch.tensor([max(k, 0) for k in keep])
    pad = torch.tensor([k < 0 for k in keep])
    mask = (~pad).expand(2, -1).clone()
    garbage = torch.full((2, len(keep)), float("nan"), dtype=torch.float64)
    r_p = torch.where(mask, rewards[:, idx], garbage)
    v_p = torch.where(mask, values[:, idx], garbage)
    d_p = dones[:, idx] & mask
    adv, ret = gae(r_p, v_p, gamma=gamma, lam=lam, terminated=d_p, bootstrap_value=boot, mask=mask)
    gp = discounted_returns(r_p, gamma, dones=d_p, bootstrap_value=boot, mask=mask)
    assert torch.allclose(adv[mask].view(2, Tn), base_adv, atol=1e-9)
    assert torch.allclose(ret[mask].view(2, Tn), base_ret, atol=1e-9)
    assert torch.allclose(gp[mask].view(2, Tn), base_g, atol=1e-9)
    assert bool((adv[~mask] == 0).all()) and bool((gp[~mask] == 0).all())


def test_gae_does_not_backprop_into_values():
    values = torch.zeros(1, 3, requires_grad=True)
    adv, ret = gae(torch.ones(1, 3), values, gamma=0.9, lam=0.9)
    assert not adv.requires_grad and not ret.requires_grad


def test_gae_refuses_next_values_together_with_bootstrap_value():
    r = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="next_values or bootstrap_value, not both"):
        gae(r, r, gamma=0.9, lam=0.9, next_values=r, bootstrap_value=torch.zeros(2))
