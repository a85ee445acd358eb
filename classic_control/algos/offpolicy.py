"""What DDPG, TD3 and SAC share: networks, optimisers, exploration noise, checks, the update hook.

The env loop that interleaves env steps and gradient steps is
``replay.ReplayCollector``; each algorithm writes only its gradient step
(``train_step``) and its exploration policy (``explore``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..config import Config, ConfigError
from ..envs import EnvSpec
from ..offpolicy_networks import OffPolicyAgent
from ..replay import Chunk, ReplayCollector, Transitions
from .base import Algorithm

NOISE_TYPES = ("normal", "ou")
TRAIN_FREQ_UNITS = ("step", "episode")
# the registered algorithms that take discrete actions (a test keeps this list complete)
DISCRETE_FIT = ("ppo", "a2c", "reinforce", "trpo", "a3c", "actor_critic", "ppo_kl")


class ExplorationNoise:
    """Gaussian or Ornstein-Uhlenbeck action noise in the [-1, 1] action space, one row per env.

    OU (theta 0.15, dt 0.01, as in the DDPG paper and SB3) is temporally
    correlated: x <- x - theta x dt + sigma sqrt(dt) N(0, 1); it restarts at 0
    when an env's episode ends.
    """

    THETA, DT = 0.15, 1e-2

    def __init__(self, kind: str, std: float, num_envs: int, act_dim: int) -> None:
        self.kind, self.std = kind, std
        self.state = torch.zeros(num_envs, act_dim)

    def __call__(self) -> Tensor:
        eps = torch.randn_like(self.state)
        if self.kind == "normal":
            return self.std * eps
        self.state += -self.THETA * self.state * self.DT + self.std * math.sqrt(self.DT) * eps
        return self.state.clone()

    def reset(self, done: np.ndarray) -> None:
        self.state[torch.from_numpy(done)] = 0.0


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No parameter gradients for ``module`` in this block (an actor loss backpropagates
    through the critic to the action without computing the critic's weight gradients)."""
    module.requires_grad_(False)
    try:
        yield
    finally:
        module.requires_grad_(True)


def _adam(cfg: Config, params, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, eps=cfg.adam_eps, fused=True)


class OffPolicy(Algorithm):
    """Base of the replay-buffer actor-critics; subclasses define ``explore`` and ``train_step``."""

    stochastic: ClassVar[bool] = False  # squashed-Gaussian actor (SAC) vs deterministic
    n_critics: ClassVar[int] = 2
    logged: ClassVar[tuple[str, ...]] = ()  # names of the columns train_step returns
    # the DDPG/TD3/SAC papers' (and SB3's) choices where Config's defaults are on-policy ones
    defaults: ClassVar[dict[str, Any]] = {
        "num_envs": 1,
        "num_steps": 1000,
        "anneal_lr": False,
        "max_grad_norm": 0.0,
        "adam_eps": 1e-8,
        "hidden_sizes": [256, 256],
        "activation": "relu",
    }

    # --- checks and construction -------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Settings every off-policy algorithm needs; subclasses add their own."""
        for name in ("buffer_size", "batch_size", "train_freq"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"{name} must be >= 1 for {cfg.algo}, got {getattr(cfg, name)}")
        if cfg.gradient_steps < 1 and cfg.gradient_steps != -1:
            raise ConfigError(
                f"gradient_steps must be >= 1 or -1 (as many as the phase's env steps) for "
                f"{cfg.algo}, got {cfg.gradient_steps}"
            )
        if cfg.train_freq_unit not in TRAIN_FREQ_UNITS:
            raise ConfigError(
                f"unknown train_freq_unit {cfg.train_freq_unit!r}; valid: "
                f"{', '.join(TRAIN_FREQ_UNITS)}"
            )
        if cfg.learning_starts < 0:
            raise ConfigError(f"learning_starts must be >= 0, got {cfg.learning_starts}")
        if not 0.0 <= cfg.tau <= 1.0:
            raise ConfigError(f"tau must be in [0, 1], got {cfg.tau}")
        lr = cfg.critic_learning_rate
        if lr is not None and not lr > 0:
            raise ConfigError(f"critic_learning_rate must be > 0 (or none), got {lr}")
        if cfg.norm_obs or cfg.norm_reward or cfg.shared_network:
            raise ConfigError(
                f"{cfg.algo} does not support norm_obs, norm_reward or shared_network "
                "(the replay buffer stores raw observations and rewards); set them false"
            )

    @classmethod
    def check_env(cls, spec: EnvSpec, env_id: str) -> None:
        if spec.discrete:
            raise ConfigError(
                f"{cls.__name__.lower()} needs continuous (Box) actions but {env_id} has "
                f"{spec.act_dim} discrete actions; use {', '.join(DISCRETE_FIT[:-1])} or "
                f"{DISCRETE_FIT[-1]} for it"
            )
        if not (np.isfinite(spec.act_low).all() and np.isfinite(spec.act_high).all()):
            raise ConfigError(
                f"{cls.__name__.lower()} rescales actions to the env's bounds, but {env_id} "
                "has unbounded actions; use ppo for it"
            )

    @classmethod
    def build_agent(cls, spec: EnvSpec, cfg: Config) -> OffPolicyAgent:
        cls.check_env(spec, cfg.env_id)
        return OffPolicyAgent(spec, cfg, stochastic=cls.stochastic, n_critics=cls.n_critics)

    def __init__(self, cfg: Config, agent: OffPolicyAgent) -> None:
        self.cfg, self.agent = cfg, agent
        self.critic_lr = cfg.critic_learning_rate or cfg.learning_rate
        self.actor_opt = _adam(cfg, agent.actor.parameters(), cfg.learning_rate)
        self.critic_opt = _adam(cfg, agent.critic.parameters(), self.critic_lr)
        self.noise = ExplorationNoise(
            cfg.exploration_noise, cfg.exploration_noise_std, cfg.num_envs, agent.act_mid.numel()
        )
        self.gradient_steps = 0  # critic updates so far (TD3 delays the actor on it)

    def make_collector(self, env_id: str, spec: EnvSpec) -> ReplayCollector:
        """The replay loop: it steps the env and calls back ``explore`` and ``train_step``."""
        return ReplayCollector(env_id, spec, self.cfg, self)

    # --- acting ------------------------------------------------------------------------------
    def explore(self, obs: Tensor) -> Tensor:
        """Exploration actions in [-1, 1]: mu(s) plus noise, clipped (DDPG, TD3)."""
        return (self.agent.actor(obs) + self.noise()).clamp(-1.0, 1.0)

    def episode_ends(self, done: np.ndarray) -> None:
        if done.any():
            self.noise.reset(done)

    # --- learning ----------------------------------------------------------------------------
    def train_step(self, b: Transitions) -> Tensor:
        """One gradient step on a replay minibatch; returns the ``logged`` values (detached)."""
        raise NotImplementedError

    def optimize(self, opt: torch.optim.Optimizer, loss: Tensor) -> None:
        """zero_grad, backward, optional global grad-norm clip, step."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            params = [p for g in opt.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        opt.step()

    def critic_loss(self, b: Transitions, y: Tensor) -> Tensor:
        """Sum over the critics of the mean squared TD error against the (n, B) target."""
        q = self.agent.critic(b.obs, b.actions)
        return (q - y).pow(2).mean(dim=1).sum()

    def update(self, chunk: Chunk, progress_left: float) -> dict[str, float]:
        if chunk.logs is None:  # still in the random warm-up
            return {}
        self.check_losses(chunk.logs)
        return dict(zip(self.logged, chunk.logs.mean(0).tolist()))

    def set_lr(self, lr: float) -> None:
        """The actor gets ``lr``; the critic keeps its ratio to it (annealing moves both)."""
        for group in self.actor_opt.param_groups:
            group["lr"] = lr
        for group in self.critic_opt.param_groups:
            group["lr"] = lr * self.critic_lr / self.cfg.learning_rate

    def state_dict(self) -> dict:
        return {
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "noise": self.noise.state.clone(),
            "gradient_steps": self.gradient_steps,
        }

    def load_state_dict(self, s: dict) -> None:
        self.actor_opt.load_state_dict(s["actor_opt"])
        self.critic_opt.load_state_dict(s["critic_opt"])
        self.noise.state = s["noise"].clone()
        self.gradient_steps = int(s["gradient_steps"])


def check_noise(cfg: Config) -> None:
    """Exploration-noise settings of the deterministic-actor algorithms (ddpg, td3)."""
    if cfg.exploration_noise not in NOISE_TYPES:
        raise ConfigError(
            f"unknown exploration_noise {cfg.exploration_noise!r}; valid: {', '.join(NOISE_TYPES)}"
        )
    if not cfg.exploration_noise_std >= 0:
        raise ConfigError(f"exploration_noise_std must be >= 0, got {cfg.exploration_noise_std}")
