"""A2C: synchronous n-step actor-critic on vectorised envs with GAE, one gradient step per rollout."""

from __future__ import annotations

import torch

from rlhf_pg.core import (
    explained_variance,
    kl_k3,
    masked_mean,
    reinforce_loss,
    value_loss,
    whiten,
)

from ..rollout import Batch
from .base import Algorithm


class A2C(Algorithm):
    def update(self, b: Batch, progress_left: float) -> dict[str, float]:
        cfg, agent = self.cfg, self.agent
        adv, ret = self.advantages(b)
        n_envs, n_steps = b.rewards.shape
        flat_obs = b.obs.reshape(n_envs * n_steps, -1)
        flat_act = b.actions.reshape(n_envs * n_steps, *b.actions.shape[2:])
        logp, ent, v = agent.evaluate(flat_obs, flat_act)
        logp, ent, v = (x.view(n_envs, n_steps) for x in (logp, ent, v))
        weights = whiten(adv) if cfg.norm_adv else adv
        pg = reinforce_loss(logp, weights)
        vl = value_loss(v, ret)
        ent_mean = masked_mean(ent)
        grad_norm = self.step(pg - cfg.ent_coef * ent_mean + cfg.vf_coef * vl)
        with torch.inference_mode():
            new_logp = agent.evaluate(flat_obs, flat_act)[0].view(n_envs, n_steps)
            kl = kl_k3(b.logprobs, new_logp).mean()
        m = torch.stack([pg.detach(), vl.detach(), ent_mean.detach(), kl, grad_norm]).tolist()
        return {
            "policy_loss": m[0],
            "value_loss": m[1],
            "entropy": m[2],
            "approx_kl": m[3],
            "grad_norm": m[4],
            "explained_var": explained_variance(b.values, ret),
        }
