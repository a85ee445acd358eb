"""Hyperparameters: one dataclass shared by all algorithms, and the checks every run needs.

Fields that only one algorithm reads say so in their comment; that algorithm
checks them (``Algorithm.check_config``, run by ``classic_control.settings``).
A preset is a YAML file ``presets/<algo>_<env id>.yaml`` holding a subset of
the fields; the command line overrides the preset, which overrides the
defaults below.

Names follow the language-model trainer where the meaning is the same
(``learning_rate``, ``clip_eps``, ``clip_eps_value``, ``entropy_coef``,
``gae_lambda``, ``update_epochs``); the old names in ``Config.ALIASES`` still
work everywhere (Python, YAML, flags, saved runs) with a one-line notice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rlhf_pg.utils.config import ConfigError, check_types, with_aliases

__all__ = ["ACTIVATIONS", "OPTIMIZERS", "Config", "ConfigError", "check_positive"]

PRESET_DIR = Path(__file__).parent / "presets"
ACTIVATIONS = ("tanh", "relu")
OPTIMIZERS = ("adam", "rmsprop")


@with_aliases
@dataclass
class Config:
    ALIASES: ClassVar[dict[str, str]] = {
        "lr": "learning_rate",
        "clip_coef": "clip_eps",
        "vf_clip_coef": "clip_eps_value",
        "ent_coef": "entropy_coef",
    }

    algo: str = "ppo"
    env_id: str = "CartPole-v1"
    seed: int = 0
    total_steps: int = 100_000  # env-step budget (all envs together)
    max_episode_steps: int | None = None  # time limit passed to gym.make (None: the env's own)
    num_envs: int = 8
    num_steps: int = 128  # rollout length per env (ppo, a2c)
    gamma: float = 0.99
    gae_lambda: float = 0.95  # ppo, a2c
    learning_rate: float = 3e-4
    # learning rate of the critic's parameters when actor and critic are separate networks
    # (None: the same as learning_rate); annealed together with it (not a3c)
    critic_learning_rate: float | None = None
    anneal_lr: bool = True  # linear decay to 0 over total_steps
    optimizer: str = "adam"  # adam | rmsprop
    adam_eps: float = 1e-5  # eps of either optimizer
    max_grad_norm: float = 0.5  # global grad-norm clip; 0 disables
    entropy_coef: float = 0.0
    vf_coef: float = 0.5
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"  # tanh | relu
    shared_network: bool = False  # one trunk for actor and critic
    norm_obs: bool = False  # running mean/std, clipped to +-10
    norm_reward: bool = False  # divide by running std of the discounted return
    init_log_std: float = 0.0  # continuous actions (sac with use_sde: of each gSDE weight's std)
    # ppo
    update_epochs: int = 10
    num_minibatches: int = 4
    clip_eps: float = 0.2
    anneal_clip: bool = False  # linear decay of clip_eps (as in the SB3 zoo CartPole settings)
    clip_vloss: bool = True
    clip_eps_value: float = 0.2
    norm_adv: bool = True
    target_kl: float | None = None  # stop the epoch loop once approx-KL exceeds it
    # ppo_kl (PPO with the adaptive KL penalty instead of the clip; names as in rlhf_pg.lm)
    kl_coef: float = 1.0  # initial penalty coefficient beta
    kl_target: float = 0.01  # the controller steers the mean KL(old || new) of an update here
    kl_horizon: float = 10_000.0  # controller horizon in env steps
    # reinforce
    episodes_per_batch: int = 8
    use_baseline: bool = True  # learned value baseline
    return_mode: str = "reward_to_go"  # reward_to_go | total (whole-episode return at every step)
    norm_returns: bool = True  # across the whole batch of episodes
    # trpo (its critic takes update_epochs x num_minibatches Adam steps per batch)
    max_kl: float = 0.01  # trust region: bound on the mean KL(old || new) of one update
    cg_iters: int = 10
    cg_damping: float = 0.1
    backtrack_iters: int = 10
    backtrack_coef: float = 0.8
    # a3c (num_envs and num_steps are per worker)
    num_workers: int = 2
    # ddpg, td3, sac (off-policy; num_steps = env steps per env between metrics rows)
    critic_learning_rate: float | None = None  # None: same as learning_rate
    buffer_size: int = 1_000_000  # replay capacity, transitions
    batch_size: int = 256  # replay minibatch
    learning_starts: int = 100  # uniform random actions (and no updates) for this many env steps
    train_freq: int = 1  # env steps per env between learning phases
    gradient_steps: int = 1  # gradient steps per learning phase
    tau: float = 0.005  # Polyak coefficient of the target networks
    exploration_noise: str = "normal"  # ddpg, td3: normal | ou (Ornstein-Uhlenbeck)
    exploration_noise_std: float = 0.1  # in units of half the action range
    policy_delay: int = 2  # td3: critic updates per actor/target update
    target_policy_noise: float = 0.2  # td3: std of the target-action smoothing noise
    target_noise_clip: float = 0.5  # td3: clip of that noise
    init_alpha: float = 1.0  # sac: initial temperature
    learn_alpha: bool = True  # sac: tune alpha towards target_entropy
    target_entropy: float | None = None  # sac: None = -action_dim
    # sac: generalized state-dependent exploration (gSDE): noise theta(s)^T W, W held for
    # sde_sample_freq env steps per env (-1: a fresh W every train_freq steps, as SB3)
    use_sde: bool = False
    sde_sample_freq: int = -1
    # evaluation and bookkeeping
    eval_every: int = 10_000  # env steps between evaluations (0: only at the end)
    eval_episodes: int = 10
    checkpoint_every: int = 25_000  # env steps between checkpoints (also saved at the end)
    torch_threads: int = 1

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """The checks every algorithm needs: types, then ranges (one ``ConfigError`` line)."""
        check_types(self)
        check_finite(self)
        for name in (
            "learning_rate",
            "adam_eps",
            "total_steps",
            "num_envs",
            "num_steps",
            "eval_episodes",
        ):
            check_positive(name, getattr(self, name))
        for name in ("gamma", "gae_lambda"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {v}")
        for name in ("max_grad_norm", "entropy_coef", "vf_coef", "eval_every", "checkpoint_every"):
            check_positive(name, getattr(self, name), allow_zero=True)
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ConfigError(
                f"hidden_sizes must be positive layer widths, got {self.hidden_sizes}"
            )
        if not 0 <= self.seed < 2**32:  # what numpy's and torch's seeding accept
            raise ConfigError(f"seed must be in [0, 2**32), got {self.seed}")
        if self.torch_threads < 1:
            raise ConfigError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ConfigError(
                "max_episode_steps must be >= 1 (or none for the env's own limit), "
                f"got {self.max_episode_steps}"
            )
        if self.critic_learning_rate is not None:
            check_positive("critic_learning_rate", self.critic_learning_rate)
        if self.use_sde and self.algo != "sac":
            raise ConfigError(
                f"use_sde (gSDE exploration) is implemented for sac only, not {self.algo}; "
                "set use_sde false"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_finite(cfg: Config) -> None:
    """Every float setting is a finite number (inf passes every range check but breaks
    training on its first update)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and math.isinf(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value}")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """``name must be > 0, got value`` (or ``>= 0``); NaN always fails."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or math.isnan(value):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def preset_path(algo: str, env_id: str) -> Path:
    return PRESET_DIR / f"{algo}_{env_id}.yaml"


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
