"""TRPO: natural-gradient policy step under a mean-KL trust region, separate value function.

Per batch: GAE advantages from the core; the search direction x solves
F x = g by conjugate gradient, where F v is a Fisher-vector product
(autograd through the mean KL between the rollout policy and the current
one, plus damping); the full step is scaled so that its quadratic KL model
equals ``max_kl``; a backtracking line search then accepts the first
candidate whose surrogate improves AND whose measured mean KL is within
``max_kl``, and keeps the old policy if none does. The critic is fitted
separately with Adam on the core's value loss.

The math lives in small pure functions (``conjugate_gradient``,
``full_step``, ``line_search``) so it can be tested on constructed cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Categorical, Independent, Normal, kl_divergence
from torch.nn.utils import parameters_to_vector

from rlhf_pg.core import explained_variance, ppo_clip_loss, value_loss, whiten

from ..config import Config, ConfigError
from ..networks import ActorCritic
from ..rollout import Batch
from .base import Algorithm, check_minibatches, make_optimizer, param_groups, unchecked_core


def conjugate_gradient(
    avp: Callable[[Tensor], Tensor], b: Tensor, iters: int, residual_tol: float = 1e-10
) -> tuple[Tensor, float]:
    """Approximately solve A x = b for symmetric positive-definite A given only x -> A x.

    Returns ``(x, squared residual norm)``.
    """
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x at x = 0
    p = r.clone()
    rr = float(r @ r)
    for _ in range(iters):
        if rr < residual_tol:
            break
        ap = avp(p)
        alpha = rr / float(p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, rr


def full_step(direction: Tensor, f_direction: Tensor, max_kl: float) -> Tensor:
    """Scale ``direction`` so that the quadratic KL model 0.5 * s^T F s equals ``max_kl``."""
    shs = 0.5 * float(direction @ f_direction)
    if not shs > 0:
        return torch.zeros_like(direction)
    return direction * math.sqrt(max_kl / shs)


@dataclass
class LineSearchResult:
    params: Tensor
    accepted: bool
    step_frac: float  # fraction of the full step taken (0 when rejected)
    surrogate: float
    kl: float
    tries: int


def line_search(
    evaluate: Callable[[Tensor], tuple[float, float]],
    theta: Tensor,
    step: Tensor,
    *,
    max_kl: float,
    backtrack_coef: float = 0.8,
    max_backtracks: int = 10,
) -> LineSearchResult:
    """Backtrack along ``step`` from ``theta``.

    ``evaluate(params) -> (surrogate, mean_kl)``; the surrogate is to be
    maximised. Candidate k is ``theta + backtrack_coef**k * step``; it is
    accepted only if its surrogate beats the one at ``theta`` AND its mean
    KL is at most ``max_kl``, both checked for that candidate. If none
    qualifies, ``theta`` is returned unchanged.
    """
    surr0, _ = evaluate(theta)
    for k in range(max_backtracks):
        frac = backtrack_coef**k
        candidate = theta + frac * step
        surr, kl = evaluate(candidate)
        if math.isfinite(surr) and math.isfinite(kl) and surr > surr0 and kl <= max_kl:
            return LineSearchResult(candidate, True, frac, surr, kl, k + 1)
    return LineSearchResult(theta, False, 0.0, surr0, 0.0, max_backtracks)


@torch.no_grad()
def set_flat_params(params: list[Tensor], flat: Tensor) -> None:
    """Copy a flat vector into the parameters in place (no aliasing, unlike
    ``vector_to_parameters``: the saved model must not share one storage)."""
    sizes = [p.numel() for p in params]
    for p, chunk in zip(params, torch.split(flat, sizes)):
        p.copy_(chunk.view_as(p))


class TRPO(Algorithm):
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        for name in ("max_kl", "cg_damping", "cg_iters", "backtrack_iters", "update_epochs"):
            if not getattr(cfg, name) > 0:
                raise ConfigError(f"{name} must be > 0 for trpo, got {getattr(cfg, name)}")
        if not 0.0 < cfg.backtrack_coef < 1.0:
            raise ConfigError(f"backtrack_coef must be in (0, 1), got {cfg.backtrack_coef}")
        if cfg.shared_network:
            raise ConfigError("trpo fits a separate value function; set shared_network false")
        check_minibatches(cfg, " (critic minibatches)")

    def __init__(self, cfg: Config, agent: ActorCritic) -> None:
        self.cfg, self.agent = cfg, agent
        self.policy_params = [
            *agent.actor_body.parameters(),
            *agent.policy_head.parameters(),
            *([agent.log_std] if not agent.discrete else []),
        ]
        # the base class clips and steps ``self.params``: for TRPO that is only the critic
        self.params = [*agent.critic_body.parameters(), *agent.value_head.parameters()]
        # the critic's learning rate: critic_learning_rate if set (see param_groups)
        self.optimizer = make_optimizer(cfg, param_groups(cfg, [], self.params))

    def _dist(self, obs: Tensor):
        out = self.agent.policy_out(obs)
        if self.agent.discrete:
            return Categorical(logits=out)
        return Independent(Normal(out, torch.exp(self.agent.log_std).expand_as(out)), 1)

    def _surrogate(self, obs: Tensor, actions: Tensor, old_logp: Tensor, adv: Tensor) -> Tensor:
        # the importance-weighted surrogate is the PPO objective without the clip
        logp = self._dist(obs).log_prob(actions)
        return -ppo_clip_loss(logp.view(1, -1), old_logp, adv, clip_eps=math.inf).loss

    def update(self, b: Batch, progress_left: float) -> dict[str, float]:
        cfg = self.cfg
        adv, ret = self.advantages(b)
        obs, actions = b.flat()
        n = obs.shape[0]
        old_logp = b.logprobs.reshape(1, n)
        adv_flat = (whiten(adv) if cfg.norm_adv else adv).reshape(1, n)
        with unchecked_core():
            metrics = self._policy_step(obs, actions, old_logp, adv_flat)
            metrics["loss/value"] = self._fit_critic(obs, ret.reshape(1, n))
        metrics["value/explained_variance"] = explained_variance(b.values, ret)
        return metrics

    def _policy_step(
        self, obs: Tensor, actions: Tensor, old_logp: Tensor, adv: Tensor
    ) -> dict[str, float]:
        cfg, params = self.cfg, self.policy_params
        with torch.no_grad():
            old_dist = self._dist(obs)

        def mean_kl() -> Tensor:
            return kl_divergence(old_dist, self._dist(obs)).mean()

        surr = self._surrogate(obs, actions, old_logp, adv)
        grad = parameters_to_vector(torch.autograd.grad(surr, params))
        kl_grad = parameters_to_vector(torch.autograd.grad(mean_kl(), params, create_graph=True))

        def fvp(v: Tensor) -> Tensor:
            hv = torch.autograd.grad(kl_grad @ v, params, retain_graph=True)
            return parameters_to_vector(hv).detach() + cfg.cg_damping * v

        direction, residual = conjugate_gradient(fvp, grad, cfg.cg_iters)
        step = full_step(direction, fvp(direction), cfg.max_kl)
        theta = parameters_to_vector(params).detach()

        @torch.no_grad()
        def evaluate(candidate: Tensor) -> tuple[float, float]:
            set_flat_params(params, candidate)
            s = self._surrogate(obs, actions, old_logp, adv)
            return float(s), float(mean_kl())

        res = line_search(
            evaluate,
            theta,
            step,
            max_kl=cfg.max_kl,
            backtrack_coef=cfg.backtrack_coef,
            max_backtracks=cfg.backtrack_iters,
        )
        with torch.no_grad():
            set_flat_params(params, res.params)
            entropy = float(self._dist(obs).entropy().mean())
        return {
            "loss/policy": -res.surrogate,
            "policy/kl": res.kl,
            "trpo/step_accepted": float(res.accepted),
            "trpo/step_frac": res.step_frac,
            "trpo/line_search_tries": float(res.tries),
            "trpo/cg_residual": residual,
            "trpo/policy_grad_norm": float(grad.norm()),
            "loss/entropy": entropy,  # of the updated policy on the batch
        }

    def _fit_critic(self, obs: Tensor, ret: Tensor) -> float:
        cfg, n = self.cfg, obs.shape[0]
        mb = n // cfg.num_minibatches
        losses = []
        for _ in range(cfg.update_epochs):
            perm = torch.randperm(n)
            for start in range(0, n, mb):
                idx = perm[start : start + mb]
                vl = value_loss(self.agent.value(obs[idx]).view(1, -1), ret[:, idx])
                self.step(vl)
                losses.append(vl.detach())
        logs = torch.stack(losses)
        self.check_losses(logs)
        return float(logs.mean())
