"""Policy-gradient estimators as per-step weights, and per-episode gradients.

Every estimator here writes the policy gradient of one episode as

    g(tau) = sum_t c_t * w_t * grad log pi(a_t | s_t)

and differs only in the weight w_t: the whole-episode return G_0 (c_t = 1),
or, with c_t = gamma^t, the reward-to-go G_t, G_t minus a constant, G_t minus
V(s_t), or a GAE advantage (lambda = 0 is the one-step TD error). The
gamma^t factor makes every one of them an estimate of the gradient of the same
objective, E[sum_t gamma^t r_t] (training code drops it, as most
implementations do; see docs/lessons.md).
The weights come from the core (``discounted_returns``, ``gae``) and from
REINFORCE's own ``episode_weights``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from rlhf_pg.core import discounted_returns, gae

from ..algos.reinforce import episode_weights
from ..networks import ActorCritic

GAE_LAMBDAS: tuple[float, ...] = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)
MC_ESTIMATORS: tuple[str, ...] = ("total", "reward_to_go", "rtg_minus_constant", "rtg_minus_value")


def gae_name(lam: float) -> str:
    return f"gae_{lam:g}"


def estimator_names(lambdas: tuple[float, ...] = GAE_LAMBDAS) -> list[str]:
    return [*MC_ESTIMATORS, *(gae_name(lam) for lam in lambdas)]


def estimator_weights(
    rewards: Tensor,
    mask: Tensor,
    terminated: Tensor,
    values: Tensor,
    *,
    gamma: float,
    constant_baseline: float,
    bootstrap_value: Tensor | None = None,
    lambdas: tuple[float, ...] = GAE_LAMBDAS,
) -> dict[str, Tensor]:
    """Per-step weights gamma^t * w_t of every estimator for a batch of episodes.

    Rows are episodes starting at column 0 (``EpisodeCollector`` batches);
    ``values`` is V(s_t) of the baseline critic; ``bootstrap_value`` is V of the
    final observation of a time-limit-truncated episode (0 otherwise), used by
    GAE the way training uses it. The Monte-Carlo weights never bootstrap: they
    estimate the gradient of the return the episode actually collects.
    """
    rtg = discounted_returns(rewards, gamma, mask=mask)
    zero = torch.zeros_like(rtg)
    out = {
        "total": episode_weights(rtg, mask, "total"),
        "reward_to_go": rtg,
        "rtg_minus_constant": torch.where(mask, rtg - constant_baseline, zero),
        "rtg_minus_value": torch.where(mask, rtg - values, zero),
    }
    for lam in lambdas:
        out[gae_name(lam)] = gae(
            rewards,
            values,
            gamma=gamma,
            lam=lam,
            terminated=terminated,
            bootstrap_value=bootstrap_value,
            mask=mask,
        )[0]
    discount = gamma ** torch.arange(rewards.shape[1], dtype=rewards.dtype)
    # G_0 already discounts from the episode's start: sum_t grad log pi_t * sum_k gamma^k r_k
    scale = {k: (1.0 if k == "total" else discount) for k in out}
    return {k: torch.where(mask, w * scale[k], zero) for k, w in out.items()}


class _PolicyLogProb(nn.Module):
    """log pi(a|s) of an ActorCritic as a forward pass, for ``torch.func``."""

    def __init__(self, agent: ActorCritic) -> None:
        super().__init__()
        self.agent = agent

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        return self.agent._logprob(self.agent.policy_out(obs), actions)


def policy_params(agent: ActorCritic) -> dict[str, Tensor]:
    """The actor's parameters (the critic does not enter the policy gradient), detached."""
    keep = ("actor_body.", "policy_head.", "log_std")
    return {f"agent.{k}": v.detach() for k, v in agent.named_parameters() if k.startswith(keep)}


def step_scores(agent: ActorCritic, obs: Tensor, actions: Tensor) -> Tensor:
    """grad_theta log pi(a_i | s_i) for every row i, flattened over the actor's parameters.

    Returns (n, P). One vectorised backward pass per call (``vmap`` of ``grad``).
    """
    module = _PolicyLogProb(agent)
    params = policy_params(agent)

    def logp(p: dict[str, Tensor], o: Tensor, a: Tensor) -> Tensor:
        return functional_call(module, p, (o.unsqueeze(0), a.unsqueeze(0))).sum()

    per_step = vmap(grad(logp), in_dims=(None, 0, 0))(params, obs, actions)
    return torch.cat([g.reshape(obs.shape[0], -1) for g in per_step.values()], dim=1)


def episode_gradients(
    agent: ActorCritic,
    obs: Tensor,
    actions: Tensor,
    mask: Tensor,
    weights: dict[str, Tensor],
    *,
    max_steps_per_pass: int = 8192,
) -> dict[str, Tensor]:
    """Per-episode gradient sum_t weight_t * grad log pi(a_t|s_t) of each estimator.

    ``obs`` (B, T, D), ``actions`` (B, T[, A]), ``mask`` (B, T), ``weights``
    name -> (B, T). Returns name -> (B, P). Only valid steps are
    differentiated, in passes of at most ``max_steps_per_pass`` steps (memory:
    one pass holds a steps x P matrix of scores).
    """
    b_idx, t_idx = torch.nonzero(mask, as_tuple=True)
    names, n_rows = list(weights), mask.shape[0]
    stacked = torch.stack([weights[k] for k in names])  # (E, B, T)
    n_params = sum(p.numel() for p in policy_params(agent).values())
    total = torch.zeros(len(names) * n_rows, n_params)
    for start in range(0, b_idx.numel(), max_steps_per_pass):
        rows = b_idx[start : start + max_steps_per_pass]
        cols = t_idx[start : start + max_steps_per_pass]
        scores = step_scores(agent, obs[rows, cols], actions[rows, cols])  # (n, P)
        # spread each step's weights onto its episode's row: one (E*B, n) @ (n, P) product
        spread = torch.zeros(len(names), n_rows, rows.numel())
        steps = torch.arange(rows.numel())
        spread[:, rows, steps] = stacked[:, rows, cols]
        total += spread.view(-1, rows.numel()) @ scores
    return dict(zip(names, total.view(len(names), n_rows, n_params)))
