"""TD3 (Fujimoto et al., 2018): twin critics, target policy smoothing, delayed actor updates."""

from __future__ import annotations

import torch
from torch import Tensor

from rlhf_pg.core import clipped_double_q_target, polyak_update

from ..config import Config, ConfigError
from ..replay import Transitions
from .offpolicy import OffPolicy, check_noise, frozen


class TD3(OffPolicy):
    n_critics = 2
    logged = ("loss/critic", "loss/actor", "q/target")

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        super().check_config(cfg)
        check_noise(cfg)
        if cfg.policy_delay < 1:
            raise ConfigError(f"policy_delay must be >= 1, got {cfg.policy_delay}")
        for name in ("target_policy_noise", "target_noise_clip"):
            if not getattr(cfg, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")

    def __init__(self, cfg: Config, agent) -> None:
        super().__init__(cfg, agent)
        # logged between delayed actor updates (0 before the first one)
        self.last_actor_loss = torch.tensor(0.0)

    def train_step(self, b: Transitions) -> Tensor:
        cfg, agent = self.cfg, self.agent
        # 1. smoothed target action: mu'(s') + clip(N(0, sigma), -c, c), kept in [-1, 1]
        with torch.no_grad():
            noise = torch.randn_like(b.actions) * cfg.target_policy_noise
            noise = noise.clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
            next_a = (agent.actor_target(b.next_obs) + noise).clamp(-1.0, 1.0)
            # 2. clipped double-Q target: the smaller of the two target critics
            q1, q2 = agent.critic_target(b.next_obs, next_a)
            y = clipped_double_q_target(b.rewards, q1, q2, gamma=cfg.gamma, terminated=b.terminated)
        # 3. both critics regress on the same y
        critic_loss = self.critic_loss(b, y)
        self.optimize(self.critic_opt, critic_loss)
        self.gradient_steps += 1
        # 4. every policy_delay critic updates: actor ascends Q1(s, mu(s)), targets follow
        if self.gradient_steps % cfg.policy_delay == 0:
            with frozen(agent.critic):
                actor_loss = -agent.critic(b.obs, agent.actor(b.obs), first=1)[0].mean()
            self.optimize(self.actor_opt, actor_loss)
            self.last_actor_loss = actor_loss.detach()
            polyak_update(agent.critic_target.parameters(), agent.critic.parameters(), tau=cfg.tau)
            polyak_update(agent.actor_target.parameters(), agent.actor.parameters(), tau=cfg.tau)
        return torch.stack([critic_loss.detach(), self.last_actor_loss, y.mean()])

    def state_dict(self) -> dict:
        return {**super().state_dict(), "last_actor_loss": self.last_actor_loss}

    def load_state_dict(self, s: dict) -> None:
        super().load_state_dict(s)
        self.last_actor_loss = s["last_actor_loss"]
