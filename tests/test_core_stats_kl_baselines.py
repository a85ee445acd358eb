"""Masked statistics, KL estimators and controllers, critic-free baselines."""

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from rlhf_pg import (
    AdaptiveKLController,
    FixedKLController,
    batch_mean_baseline,
    explained_variance,
    grpo_advantages,
    kl_estimate,
    kl_k1,
    kl_k2,
    kl_k3,
    masked_mean,
    masked_var,
    rloo_advantages,
    whiten,
)

T = torch.tensor


def test_masked_mean_var_hand_computed():
    x = T([[1.0, 2.0, 100.0], [3.0, float("nan"), 4.0]])
    m = T([[True, True, False], [True, False, True]])
    assert masked_mean(x, m).item() == pytest.approx(2.5)
    # values 1,2,3,4: biased var 1.25, unbiased 5/3
    assert masked_var(x, m, unbiased=False).item() == pytest.approx(1.25)
    assert masked_var(x, m).item() == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="no element"):
        masked_mean(x, torch.zeros_like(m))


def test_whiten_valid_entries_zero_mean_unit_var_and_masked_zero():
    torch.manual_seed(0)
    x = torch.randn(4, 7) * 3 + 5
    m = torch.rand(4, 7) > 0.3
    w = whiten(x, m)
    assert masked_mean(w, m).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_var(w, m).item() == pytest.approx(1.0, rel=1e-4)
    assert bool((w[~m] == 0).all())
    kept = whiten(x, m, shift_mean=False)
    assert masked_mean(kept, m).item() == pytest.approx(masked_mean(x, m).item(), rel=1e-5)


def test_whiten_gradient_ignores_nan_padding():
    x = T([[1.0, 2.0, float("nan")]], requires_grad=True)
    whiten(x, T([[True, True, False]])).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_explained_variance():
    y = T([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(y, 2.5), y) == pytest.approx(0.0)
    assert math.isnan(explained_variance(y, torch.ones(4)))


def test_kl_estimators_hand_computed_and_exact_in_expectation():
    lp, ref = T([-1.0]), T([-2.0])
    assert kl_k1(lp, ref).item() == pytest.approx(1.0)
    assert kl_k2(lp, ref).item() == pytest.approx(0.5)
    assert kl_k3(lp, ref).item() == pytest.approx(math.exp(-1) - 1 + 1)
    # exact enumeration over a categorical: E_pi[k1] = E_pi[k3] = KL(pi || ref)
    p = torch.softmax(T([0.3, -1.0, 2.0]), -1)
    q = torch.softmax(T([1.0, 0.0, 0.5]), -1)
    exact = (p * (p.log() - q.log())).sum()
    for est in ("k1", "k3"):
        assert (p * kl_estimate(p.log(), q.log(), est)).sum().item() == pytest.approx(exact.item())
    assert kl_estimate(p.log(), p.log(), "k3").abs().max().item() == 0
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(lp, ref, "k4")


def test_kl_controllers():
    fixed = FixedKLController(0.1)
    assert fixed.update(100.0, 64) == 0.1
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10_000)
    v = ctl.update(12.0, 1000)  # error clipped to +0.2 -> beta * (1 + 0.2 * 0.1)
    assert v == pytest.approx(0.2 * 1.02)
    ctl.update(3.0, 1000)  # error -0.5 clipped to -0.2
    assert ctl.kl_coef == ctl.value == pytest.approx(0.2 * 1.02 * 0.98)
    restored = AdaptiveKLController(1.0, target=1.0, horizon=1.0)
    restored.load_state_dict(ctl.state_dict())
    assert restored.update(6.0, 10) == ctl.update(6.0, 10)
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, target=-1.0, horizon=10)


def test_rloo_and_grpo_hand_computed():
    s = T([[1.0, 2.0, 3.0]])
    assert torch.allclose(rloo_advantages(s), T([[1 - 2.5, 2 - 2.0, 3 - 1.5]]))
    assert torch.allclose(grpo_advantages(s, scale_by_std=False), T([[-1.0, 0.0, 1.0]]))
    assert torch.allclose(grpo_advantages(s, eps=0.0), T([[-1.0, 0.0, 1.0]]))  # std = 1
    assert torch.allclose(grpo_advantages(T([[5.0, 5.0]])), T([[0.0, 0.0]]))
    assert torch.allclose(batch_mean_baseline(T([1.0, 3.0])), T([-1.0, 1.0]))
    with pytest.raises(ValueError, match="at least 2"):
        rloo_advantages(T([[1.0], [2.0]]))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), G=st.integers(1, 5), k=st.integers(2, 8))
def test_group_advantages_sum_to_zero(seed, G, k):
    s = torch.randn(G, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    for adv in (rloo_advantages(s), grpo_advantages(s), grpo_advantages(s, scale_by_std=False)):
        assert torch.allclose(adv.sum(dim=1), torch.zeros(G, dtype=torch.float64), atol=1e-9)
    # RLOO is the group-centred score scaled by k / (k - 1)
    centred = s - s.mean(1, keepdim=True)
    assert torch.allclose(rloo_advantages(s), centred * k / (k - 1), atol=1e-9)


def test_kl_estimators_take_a_mask_and_ignore_nan_padding():
    from rlhf_pg.core import kl_estimate

    logp = torch.tensor([[-1.0, -2.0, float("nan")], [-0.5, float("nan"), float("nan")]])
    ref = torch.tensor([[-1.5, -1.0, -3.0], [-0.5, 0.0, -2.0]])
    mask = ~logp.isnan()
    for name in ("k1", "k2", "k3"):
        kl = kl_estimate(logp, ref, name, mask=mask)
        assert (kl[~mask] == 0).all() and kl[mask].isfinite().all(), name
    # k3 at a valid position: (r - 1) - log r with r = exp(ref - logp)
    r = math.exp(-1.5 + 1.0)
    assert float(kl_estimate(logp, ref, "k3", mask=mask)[0, 0]) == pytest.approx(
        r - 1 - math.log(r)
    )


def test_grpo_shape_error_names_groups_and_samples():
    with pytest.raises(ValueError, match=r"\(groups, samples\)"):
        grpo_advantages(torch.ones(6))


def test_masked_statistics_of_bf16_input_accumulate_in_float32():
    from rlhf_pg.core import masked_mean, masked_var

    torch.manual_seed(0)
    x = (torch.randn(200_000) * 0.1 + 3).bfloat16()
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[::7] = False
    exact = x.double()[mask]
    assert float(masked_mean(x, mask)) == pytest.approx(float(exact.mean()), rel=1e-6)
    assert float(masked_var(x, mask)) == pytest.approx(float(exact.var()), rel=1e-4)
    assert whiten(x, mask).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 2, 7, 256])
def test_mask_none_statistics_equal_an_all_true_mask_bit_for_bit(dtype, n):
    torch.manual_seed(n)
    x = (torch.randn(1, n) * 3 + 1).to(dtype).requires_grad_()
    every = torch.ones(1, n, dtype=torch.bool)
    for f in (masked_mean, masked_var, lambda x, m=None: masked_var(x, m, unbiased=False), whiten):
        fast, masked = f(x), f(x, every)
        assert torch.equal(fast, masked)
        (g_fast,) = torch.autograd.grad(fast.float().sum(), x)
        (g_masked,) = torch.autograd.grad(masked.float().sum(), x)
        assert torch.equal(g_fast, g_masked)
    if n == 1:
        assert masked_var(x).item() == 0.0  # unbiased, one element: 0 as with a mask
    with pytest.raises(ValueError, match="empty"):
        masked_mean(torch.zeros(1, 0, dtype=dtype))


def test_whiten_without_a_mask_makes_no_host_sync():
    """A minibatch loop calls it every optimiser step: no .item()/float() of a tensor."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from rlhf_pg.core import finite_checks

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func))
            return func(*args, **(kwargs or {}))

    x = torch.randn(1, 64)
    syncs = {}
    for mask in (None, torch.ones(1, 64, dtype=torch.bool)):
        with finite_checks(False), Ops() as ops:
            whiten(x, mask)
        syncs[mask is None] = sum("_local_scalar_dense" in n for n in ops.names)
    assert syncs[False] > 0  # the counter sees the masked path's count checks
    assert syncs[True] == 0
