"""SAC (Haarnoja et al., 2018): squashed-Gaussian actor, twin critics, learned temperature."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rlhf_pg.core import polyak_update, soft_q_target, temperature_loss

from ..config import Config, ConfigError
from ..replay import Transitions
from .offpolicy import OffPolicy, _adam, frozen


class SAC(OffPolicy):
    stochastic = True
    n_critics = 2
    logged = ("loss/critic", "loss/actor", "loss/alpha", "sac/alpha", "sac/entropy", "q/target")

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        super().check_config(cfg)
        if not cfg.init_alpha > 0:
            raise ConfigError(f"init_alpha must be > 0, got {cfg.init_alpha}")
        if cfg.target_entropy is not None and not math.isfinite(cfg.target_entropy):
            raise ConfigError(f"target_entropy must be finite (or none), got {cfg.target_entropy}")
        if cfg.sde_sample_freq == 0 or cfg.sde_sample_freq < -1:
            raise ConfigError(
                f"sde_sample_freq must be >= 1 (env steps per exploration matrix) or -1 "
                f"(one per train_freq steps), got {cfg.sde_sample_freq}"
            )
        if cfg.use_sde and cfg.sde_sample_freq == -1 and cfg.train_freq_unit != "step":
            raise ConfigError(
                "sde_sample_freq -1 holds each exploration matrix for train_freq env steps, "
                f"which train_freq_unit {cfg.train_freq_unit!r} does not give; set "
                "sde_sample_freq >= 1"
            )

    def __init__(self, cfg: Config, agent) -> None:
        super().__init__(cfg, agent)
        act_dim = agent.act_mid.numel()
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.alpha_opt = _adam(cfg, [agent.log_alpha], cfg.learning_rate)
        # gSDE: env steps (per env) each exploration matrix is held, and the current matrices
        self.sde_period = cfg.sde_sample_freq if cfg.sde_sample_freq > 0 else cfg.train_freq
        self.sde_steps = 0
        self.exploration_matrices: Tensor | None = None

    def explore(self, obs: Tensor) -> Tensor:
        """A sample of the squashed Gaussian: SAC explores through its own entropy. With gSDE
        the noise theta(s)^T W comes from one matrix W per env, held ``sde_period`` steps."""
        if not self.cfg.use_sde:
            return self.agent.actor.explore(obs)
        if self.sde_steps % self.sde_period == 0:
            self.exploration_matrices = self.agent.actor.sample_exploration_matrices(len(obs))
        self.sde_steps += 1
        return self.agent.actor.explore(obs, self.exploration_matrices)

    def train_step(self, b: Transitions) -> Tensor:
        cfg, agent = self.cfg, self.agent
        # 1. fresh reparameterised actions for s; alpha is a constant within this step
        a_pi, logp = agent.actor.sample(b.obs)
        alpha = agent.log_alpha.exp().detach()
        # 2. temperature: move the policy entropy towards the target
        alpha_loss = temperature_loss(agent.log_alpha, logp, target_entropy=self.target_entropy)
        if cfg.learn_alpha:
            self.optimize(self.alpha_opt, alpha_loss)
        # 3. soft target from a fresh sample at s' and the target critics
        with torch.no_grad():
            next_a, next_logp = agent.actor.sample(b.next_obs)
            q1, q2 = agent.critic_target(b.next_obs, next_a)
            y = soft_q_target(
                b.rewards,
                q1,
                q2,
                next_logp,
                gamma=cfg.gamma,
                alpha=float(alpha),
                terminated=b.terminated,
            )
        # 4. both critics regress on y
        critic_loss = self.critic_loss(b, y)
        self.optimize(self.critic_opt, critic_loss)
        # 5. actor: maximise min_k Q_k(s, a) + alpha * entropy
        with frozen(agent.critic):
            q_pi = agent.critic(b.obs, a_pi).min(dim=0).values
        actor_loss = (alpha * logp - q_pi).mean()
        self.optimize(self.actor_opt, actor_loss)
        # 6. target critics follow slowly
        polyak_update(agent.critic_target.parameters(), agent.critic.parameters(), tau=cfg.tau)
        self.gradient_steps += 1
        logs = [critic_loss, actor_loss, alpha_loss, alpha, -logp.mean(), y.mean()]
        return torch.stack(logs).detach()

    def set_lr(self, lr: float) -> None:
        super().set_lr(lr)
        for group in self.alpha_opt.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict:
        # the held gSDE matrices travel with the checkpoint; the RNG that draws the next ones
        # is torch's global generator, whose state the trainer saves
        return {
            **super().state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
            "sde_steps": self.sde_steps,
            "exploration_matrices": self.exploration_matrices,
        }

    def load_state_dict(self, s: dict) -> None:
        super().load_state_dict(s)
        self.alpha_opt.load_state_dict(s["alpha_opt"])
        # .get: checkpoints written before gSDE existed hold neither (and never used them)
        self.sde_steps = int(s.get("sde_steps", 0))
        self.exploration_matrices = s.get("exploration_matrices")
