"""One-step actor-critic, as taught: one env, one update per env step, TD(0) error as advantage.

After every step (s, a, r, s'):

    delta = r + gamma * V(s') * (1 - terminated) - V(s)     (core ``gae`` with lam = 0)
    actor:  minimise -log pi(a|s) * delta                   (delta detached)
    critic: minimise 0.5 * (V(s) - (r + gamma * V(s')))^2   (the TD(0) target, detached)

A time-limit truncation bootstraps from V(final observation), like every
other algorithm here. Actor and critic keep separate learning rates
(``lr`` and ``critic_learning_rate``, the critic's usually larger).
"""

from __future__ import annotations

import torch

from rlhf_pg.core import gae, masked_mean, reinforce_loss, value_loss

from ..config import Config, ConfigError
from ..rollout import Batch
from .base import Algorithm, unchecked_core


class ActorCritic1Step(Algorithm):
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        if cfg.num_envs != 1 or cfg.num_steps != 1:
            raise ConfigError(
                "actor_critic updates after every step of one env: num_envs and num_steps "
                f"must be 1, got {cfg.num_envs} and {cfg.num_steps} (a2c is the batched version)"
            )
        if cfg.shared_network:
            raise ConfigError(
                "actor_critic keeps actor and critic apart (separate learning rates); "
                "set shared_network false"
            )

    def update(self, b: Batch, progress_left: float) -> dict[str, float]:
        cfg, agent = self.cfg, self.agent
        # lam = 0: the advantage is the TD error, the return the TD(0) target
        delta, target = gae(
            b.rewards,
            b.values,
            gamma=cfg.gamma,
            lam=0.0,
            terminated=b.terminated,
            truncated=b.truncated,
            next_values=b.next_values,
        )
        obs = b.obs.reshape(1, -1)
        actions = b.actions.reshape(1, *b.actions.shape[2:])
        logp, ent, v = agent.evaluate(obs, actions, entropy_grad=cfg.entropy_coef != 0)
        with unchecked_core():  # gae scanned the inputs; the stacked logs are checked below
            pg = reinforce_loss(logp.view(1, 1), delta)
            vl = value_loss(v.view(1, 1), target)
            ent_mean = masked_mean(ent.view(1, 1))
        grad_norm = self.step(pg - cfg.entropy_coef * ent_mean + cfg.vf_coef * vl)
        m = torch.stack([pg.detach(), vl.detach(), ent_mean.detach(), grad_norm, delta[0, 0]])
        self.check_losses(m)
        return dict(
            zip(("loss/policy", "loss/value", "loss/entropy", "grad_norm", "td_error"), m.tolist())
        )
