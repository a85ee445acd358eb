"""A2C: synchronous n-step actor-critic on vectorised envs with GAE, one gradient step per rollout.

``actor_critic_loss`` is also the loss each A3C worker backpropagates.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from rlhf_pg.core import (
    explained_variance,
    kl_k3,
    masked_mean,
    reinforce_loss,
    value_loss,
    whiten,
)

from ..config import Config
from ..networks import ActorCritic
from ..rollout import Batch
from .base import Algorithm


class ActorCriticLoss(NamedTuple):
    total: Tensor  # policy - entropy_coef * entropy + vf_coef * value
    policy: Tensor
    value: Tensor
    entropy: Tensor


def actor_critic_loss(
    cfg: Config, agent: ActorCritic, b: Batch, adv: Tensor, ret: Tensor
) -> ActorCriticLoss:
    """Policy-gradient loss weighted by ``adv`` (whitened if ``norm_adv``), value loss to
    ``ret`` and entropy bonus over a whole ``(N, T)`` rollout, in one network pass."""
    n_envs, n_steps = b.rewards.shape
    obs, actions = b.flat()
    out = agent.evaluate(obs, actions, entropy_grad=cfg.entropy_coef != 0)
    logp, ent, v = (x.view(n_envs, n_steps) for x in out)
    pg = reinforce_loss(logp, whiten(adv) if cfg.norm_adv else adv)
    vl = value_loss(v, ret)
    ent_mean = masked_mean(ent)
    return ActorCriticLoss(pg - cfg.entropy_coef * ent_mean + cfg.vf_coef * vl, pg, vl, ent_mean)


class A2C(Algorithm):
    def update(self, b: Batch, progress_left: float) -> dict[str, float]:
        adv, ret = self.advantages(b)
        loss = actor_critic_loss(self.cfg, self.agent, b, adv, ret)
        grad_norm = self.step(loss.total)
        with torch.inference_mode():
            new_logp = self.agent.evaluate(*b.flat())[0].view(b.rewards.shape)
            kl = kl_k3(b.logprobs, new_logp).mean()
        parts = (loss.policy, loss.value, loss.entropy)
        m = torch.stack([*(x.detach() for x in parts), kl, grad_norm]).tolist()
        return {
            "loss/policy": m[0],
            "loss/value": m[1],
            "loss/entropy": m[2],
            "policy/approx_kl": m[3],
            "grad_norm": m[4],
            "value/explained_variance": explained_variance(b.values, ret),
        }
