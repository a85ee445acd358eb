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
REPORT_TO = ("tensorboard",)  # trackers besides metrics.jsonl / metrics.csv


def _h(default: Any, help: str) -> Any:
    """A field with its ``--help`` text (``metadata["help"]``, as ``HfArgumentParser`` reads)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@with_aliases
@dataclass
class Config:
    ALIASES: ClassVar[dict[str, str]] = {
        "lr": "learning_rate",
        "clip_coef": "clip_eps",
        "vf_clip_coef": "clip_eps_value",
        "ent_coef": "entropy_coef",
    }

    # --- what to run ---------------------------------------------------------------------------
    algo: str = _h("ppo", "algorithm")
    env_id: str = _h("CartPole-v1", "gymnasium env id, or module:EnvId for your own env")
    seed: int = _h(0, "seeds networks, action sampling, minibatch order and env resets")
    total_steps: int = _h(100_000, "env-step budget (all envs together)")
    env_kwargs: dict[str, Any] = _h(
        {}, "keyword arguments passed to gym.make (JSON object or key=value pairs)"
    )
    max_episode_steps: int | None = _h(None, "time limit passed to gym.make (none: the env's own)")
    # --- rollouts and returns --------------------------------------------------------------------
    num_envs: int = _h(8, "parallel envs (per worker for a3c)")
    num_steps: int = _h(
        128, "rollout length per env (ppo, a2c, trpo, a3c); env steps per metrics row off-policy"
    )
    gamma: float = _h(0.99, "discount factor")
    gae_lambda: float = _h(0.95, "GAE lambda (ppo, a2c, trpo, ppo_kl)")
    # --- optimisation ------------------------------------------------------------------------------
    learning_rate: float = _h(3e-4, "learning rate (of the actor where actor and critic are apart)")
    critic_learning_rate: float | None = _h(
        None,
        "learning rate of the critic when it is a separate network (none: learning_rate); "
        "annealed with it (not a3c)",
    )
    anneal_lr: bool = _h(True, "decay the learning rate linearly to 0 over total_steps")
    optimizer: str = _h("adam", f"optimizer: {' | '.join(OPTIMIZERS)}")
    adam_eps: float = _h(1e-5, "eps of either optimizer")
    max_grad_norm: float = _h(0.5, "clip the global gradient norm to this; 0 disables")
    entropy_coef: float = _h(0.0, "weight of the entropy bonus")
    vf_coef: float = _h(0.5, "weight of the value loss")
    # --- networks and normalisation ----------------------------------------------------------------
    hidden_sizes: list[int] = _h([64, 64], "hidden layer widths")
    activation: str = _h("tanh", f"activation: {' | '.join(ACTIVATIONS)}")
    shared_network: bool = _h(False, "one trunk for actor and critic")
    norm_obs: bool = _h(False, "normalise observations by a running mean/std, clipped to +-10")
    norm_reward: bool = _h(False, "divide rewards by the running std of the discounted return")
    init_log_std: float = _h(
        0.0,
        "initial log std of the Gaussian policy (continuous actions); "
        "sac with use_sde: of each entry of the gSDE matrix W",
    )
    # --- ppo -------------------------------------------------------------------------------------
    update_epochs: int = _h(10, "passes over each batch (ppo, ppo_kl; trpo's critic)")
    num_minibatches: int = _h(4, "minibatches per pass (ppo, ppo_kl; trpo's critic)")
    clip_eps: float = _h(0.2, "ppo: clip range of the probability ratio")
    anneal_clip: bool = _h(
        False, "ppo: decay clip_eps linearly to 0 (as in the SB3 zoo CartPole settings)"
    )
    clip_vloss: bool = _h(True, "clip the value loss around the old values (ppo, ppo_kl)")
    clip_eps_value: float = _h(0.2, "clip range of the value loss")
    norm_adv: bool = _h(True, "normalise advantages per minibatch")
    target_kl: float | None = _h(
        None, "stop the epoch loop once approx-KL exceeds this (none: never)"
    )
    # --- ppo_kl (PPO with the adaptive KL penalty instead of the clip; names as in rlhf_pg.lm) ------
    kl_coef: float = _h(1.0, "ppo_kl: initial penalty coefficient beta")
    kl_target: float = _h(0.01, "ppo_kl: the mean KL(old || new) the controller steers to")
    kl_horizon: float = _h(10_000.0, "ppo_kl: controller horizon in env steps")
    # --- reinforce -----------------------------------------------------------------------------
    episodes_per_batch: int = _h(8, "reinforce: whole episodes per batch")
    use_baseline: bool = _h(True, "reinforce: subtract a learned value baseline")
    return_mode: str = _h(
        "reward_to_go", "reinforce: reward_to_go | total (whole-episode return at every step)"
    )
    norm_returns: bool = _h(True, "reinforce: normalise returns across the batch of episodes")
    # --- trpo (its critic takes update_epochs x num_minibatches Adam steps per batch) ------------
    max_kl: float = _h(0.01, "trpo: bound on the mean KL(old || new) of one update")
    cg_iters: int = _h(10, "trpo: conjugate-gradient iterations")
    cg_damping: float = _h(0.1, "trpo: damping added to the Fisher-vector product")
    backtrack_iters: int = _h(10, "trpo: line-search steps")
    backtrack_coef: float = _h(0.8, "trpo: step shrink factor per line-search step")
    # --- a3c (num_envs and num_steps are per worker) ---------------------------------------------
    num_workers: int = _h(2, "a3c: worker processes")
    # --- ddpg, td3, sac (off-policy) -------------------------------------------------------------
    buffer_size: int = _h(1_000_000, "replay capacity in transitions (ddpg, td3, sac)")
    batch_size: int = _h(256, "replay minibatch (ddpg, td3, sac)")
    learning_starts: int = _h(
        100, "uniform random actions, and no updates, for this many env steps (ddpg, td3, sac)"
    )
    train_freq: int = _h(
        1,
        "a learning phase every train_freq env steps per env, or finished episodes (all envs "
        "together) with train_freq_unit episode (ddpg, td3, sac)",
    )
    train_freq_unit: str = _h(
        "step", "unit of train_freq: step | episode (SB3's train_freq=(n, unit)) (ddpg, td3, sac)"
    )
    gradient_steps: int = _h(
        1,
        "gradient steps per learning phase; -1: as many as the phase had env steps, all envs "
        "together (SB3's -1) (ddpg, td3, sac)",
    )
    tau: float = _h(0.005, "Polyak coefficient of the target networks (ddpg, td3, sac)")
    exploration_noise: str = _h("normal", "ddpg, td3: normal | ou (Ornstein-Uhlenbeck)")
    exploration_noise_std: float = _h(
        0.1, "ddpg, td3: exploration noise std in units of half the action range"
    )
    policy_delay: int = _h(2, "td3: critic updates per actor/target update")
    target_policy_noise: float = _h(0.2, "td3: std of the target-action smoothing noise")
    target_noise_clip: float = _h(0.5, "td3: clip of the target-action smoothing noise")
    init_alpha: float = _h(1.0, "sac: initial temperature")
    learn_alpha: bool = _h(True, "sac: tune the temperature towards target_entropy")
    target_entropy: float | None = _h(None, "sac: target entropy (none: -action_dim)")
    use_sde: bool = _h(
        False,
        "sac: generalized state-dependent exploration (gSDE): noise theta(s)^T W, with theta(s) "
        "the actor's last hidden layer and W a random matrix per env",
    )
    sde_sample_freq: int = _h(
        -1, "sac with use_sde: env steps per env each W is held (-1: train_freq steps, as SB3)"
    )
    # --- evaluation, logging and bookkeeping -------------------------------------------------------
    eval_every: int = _h(10_000, "env steps between evaluations (0: only at the end)")
    eval_episodes: int = _h(10, "deterministic episodes per evaluation")
    checkpoint_every: int = _h(25_000, "env steps between checkpoints (also saved at the end)")
    report_to: list[str] = _h(
        [], f"also log the metrics to: {' '.join(REPORT_TO)} (none: only the metrics files)"
    )
    torch_threads: int = _h(1, "torch CPU threads")
    flush_denormal: bool = _h(
        True,
        "torch CPU: compute with subnormal floats as zero (Adam's second moments of tiny "
        "gradients decay into them, and x86 cores handle them many times slower)",
    )

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
        check_env_kwargs(self.env_kwargs)
        self.report_to = check_report_to(self.report_to)

    def env_options(self) -> dict[str, Any]:
        """What ``envs.make_env`` needs besides the env id (so every env of a run is alike)."""
        return {"max_episode_steps": self.max_episode_steps, "env_kwargs": self.env_kwargs}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# gym.make's own parameters: chosen by their own settings, never through env_kwargs
RESERVED_ENV_KWARGS = {
    "max_episode_steps": "use max_episode_steps (--max-episode-steps)",
    "render_mode": "eval --video chooses it",
}


def check_env_kwargs(env_kwargs: dict[str, Any]) -> None:
    """Keys are strings and none is one of gym.make's own parameters."""
    for key in env_kwargs:
        if not isinstance(key, str):
            raise ConfigError(f"env_kwargs keys must be strings, got {key!r}")
        if key in RESERVED_ENV_KWARGS:
            raise ConfigError(f"env_kwargs may not set {key!r}; {RESERVED_ENV_KWARGS[key]}")


def check_report_to(report_to: list[str]) -> list[str]:
    """The trackers to log to, each once; ``none`` (alone) means only the metrics files."""
    if report_to == ["none"]:
        return []
    for name in report_to:
        if name not in REPORT_TO:
            raise ConfigError(
                f"unknown report_to {name!r}; valid: {', '.join(REPORT_TO)} or none (alone)"
            )
    return list(dict.fromkeys(report_to))


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
