"""DDPG (Lillicrap et al., 2016): deterministic actor, one critic, target networks, noise."""

from __future__ import annotations

import torch
from torch import Tensor

from rlhf_pg.core import polyak_update, td_target

from ..config import Config
from ..replay import Transitions
from .offpolicy import OffPolicy, check_noise, frozen


class DDPG(OffPolicy):
    n_critics = 1
    logged = ("loss/critic", "loss/actor", "q/target")

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        super().check_config(cfg)
        check_noise(cfg)

    def train_step(self, b: Transitions) -> Tensor:
        cfg, agent = self.cfg, self.agent
        # 1. target: y = r + gamma (1 - term) Q'(s', mu'(s')), from the target networks
        with torch.no_grad():
            next_q = agent.critic_target(b.next_obs, agent.actor_target(b.next_obs))[0]
            y = td_target(b.rewards, next_q, gamma=cfg.gamma, terminated=b.terminated)
        # 2. critic: regress Q(s, a) on y
        critic_loss = self.critic_loss(b, y)
        self.optimize(self.critic_opt, critic_loss)
        # 3. actor: ascend Q(s, mu(s)) (the critic's gradients from this loss are discarded)
        with frozen(agent.critic):
            actor_loss = -agent.critic(b.obs, agent.actor(b.obs))[0].mean()
        self.optimize(self.actor_opt, actor_loss)
        # 4. targets follow slowly
        polyak_update(agent.critic_target.parameters(), agent.critic.parameters(), tau=cfg.tau)
        polyak_update(agent.actor_target.parameters(), agent.actor.parameters(), tau=cfg.tau)
        self.gradient_steps += 1
        return torch.stack([critic_loss, actor_loss, y.mean()]).detach()
