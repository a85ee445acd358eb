"""Bad input raises a clear error naming the argument, never broadcasts silently."""

import pytest
import torch

from rlhf_pg import (
    aggregate_loss,
    discounted_returns,
    gae,
    grpo_advantages,
    masked_mean,
    ppo_clip_loss,
    reinforce_loss,
    value_loss,
    whiten,
)

R = torch.ones(2, 3)
V = torch.zeros(2, 3)


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda: gae(R, torch.zeros(2, 1), gamma=0.9, lam=0.9), ValueError, "values has shape"),
        (lambda: gae(R, V, gamma=1.5, lam=0.9), ValueError, r"gamma must be in \[0, 1\]"),
        (lambda: gae(R, V, gamma=0.9, lam=-0.1), ValueError, r"lam must be in \[0, 1\]"),
        (lambda: gae(R, V, gamma=0.9, lam=0.9, mask=torch.ones(2, 3)), TypeError, "torch.bool"),
        (
            lambda: gae(R, V, gamma=0.9, lam=0.9, terminated=torch.zeros(2, 3)),
            TypeError,
            "terminated must have dtype torch.bool",
        ),
        (
            lambda: gae(torch.ones(3), torch.zeros(3), gamma=0.9, lam=0.9),
            ValueError,
            r"rewards must have 2 dimension",
        ),
        (
            lambda: gae(torch.ones(0, 3), torch.zeros(0, 3), gamma=0.9, lam=0.9),
            ValueError,
            "rewards is empty",
        ),
        (
            lambda: gae(torch.tensor([[1.0, float("nan")]]), torch.zeros(1, 2), gamma=0.9, lam=0.9),
            ValueError,
            r"rewards contains NaN or inf at index \(0, 1\)",
        ),
        (
            lambda: gae(R, V, gamma=0.9, lam=0.9, bootstrap_value=torch.zeros(2, 1)),
            ValueError,
            "bootstrap_value must have 1",
        ),
        (
            lambda: gae(R, V, gamma=0.9, lam=0.9, bootstrap_value=torch.zeros(3)),
            ValueError,
            r"bootstrap_value must have shape \(2,\)",
        ),
        (lambda: discounted_returns(R.long(), 0.9), TypeError, "floating-point"),
        (lambda: discounted_returns([[1.0]], 0.9), TypeError, "rewards must be a torch.Tensor"),
        (lambda: discounted_returns(R, "0.9"), TypeError, "gamma"),
        (
            lambda: reinforce_loss(torch.zeros(4, 1), torch.zeros(4, 4)),
            ValueError,
            "weights has shape",
        ),
        (lambda: ppo_clip_loss(V, V, torch.zeros(2, 1)), ValueError, "advantages has shape"),
        (lambda: ppo_clip_loss(V, V, V, clip_eps=0.0), ValueError, "clip_eps must be > 0"),
        (
            lambda: ppo_clip_loss(V, V, V, torch.ones(2, 3, dtype=torch.bool)[:, :2]),
            ValueError,
            "mask has shape",
        ),
        (lambda: value_loss(V, torch.zeros(3, 2)), ValueError, "returns has shape"),
        (lambda: value_loss(V, V, old_values=V, clip_eps=-1.0), ValueError, "clip_eps"),
        (lambda: aggregate_loss(V, mode="mean"), ValueError, "unknown loss aggregation"),
        (lambda: masked_mean(torch.tensor([float("inf")])), ValueError, "x contains NaN"),
        (
            lambda: whiten(torch.ones(2, 2), torch.zeros(2, 2, dtype=torch.bool)),
            ValueError,
            "no element",
        ),
        (lambda: grpo_advantages(torch.ones(4)), ValueError, "scores must have 2"),
    ],
)
def test_bad_input_raises_clear_error(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_b_vs_b1_mixup_raises_instead_of_broadcasting():
    logp = torch.zeros(8, 1)
    adv = torch.zeros(8)
    with pytest.raises(ValueError):
        reinforce_loss(logp, adv)  # adv is 1-D: rejected, never broadcast to (8, 8)
    with pytest.raises(ValueError, match="advantages has shape"):
        ppo_clip_loss(torch.zeros(8, 1), torch.zeros(8, 1), torch.zeros(1, 8))


def test_nan_checks_can_be_disabled_for_hot_loops():
    from rlhf_pg import set_finite_checks

    set_finite_checks(False)
    try:
        out = discounted_returns(torch.tensor([[float("nan")]]), 0.9)
        assert torch.isnan(out).all()
    finally:
        set_finite_checks(True)


def test_finite_checks_context_manager_restores_previous_setting():
    from rlhf_pg import finite_checks

    with finite_checks(False):
        assert torch.isnan(discounted_returns(torch.tensor([[float("nan")]]), 0.9)).all()
    with pytest.raises(ValueError, match="NaN"):
        discounted_returns(torch.tensor([[float("nan")]]), 0.9)
