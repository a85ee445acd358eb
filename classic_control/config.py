"""Hyperparameters: one dataclass shared by all algorithms, YAML presets, validation.

Fields that only one algorithm reads say so in their comment. A preset is a
YAML file ``presets/<algo>_<env id>.yaml`` holding a subset of the fields;
the command line overrides the preset, which overrides the defaults below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """Bad user input, reported as a one-line ``error: ...`` by the CLI."""


@dataclass
class Config:
    algo: str = "ppo"
    env_id: str = "CartPole-v1"
    seed: int = 0
    total_steps: int = 100_000  # env-step budget (all envs together)
    num_envs: int = 8
    num_steps: int = 128  # rollout length per env (ppo, a2c)
    gamma: float = 0.99
    gae_lambda: float = 0.95  # ppo, a2c
    lr: float = 3e-4
    anneal_lr: bool = True  # linear decay to 0 over total_steps
    optimizer: str = "adam"  # adam | rmsprop
    adam_eps: float = 1e-5  # eps of either optimizer
    max_grad_norm: float = 0.5  # global grad-norm clip; 0 disables
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"  # tanh | relu
    shared_network: bool = False  # one trunk for actor and critic
    norm_obs: bool = False  # running mean/std, clipped to +-10
    norm_reward: bool = False  # divide by running std of the discounted return
    init_log_std: float = 0.0  # continuous actions
    # ppo
    update_epochs: int = 10
    num_minibatches: int = 4
    clip_coef: float = 0.2
    anneal_clip: bool = False  # linear decay of clip_coef (as in the SB3 zoo CartPole settings)
    clip_vloss: bool = True
    vf_clip_coef: float = 0.2
    norm_adv: bool = True
    target_kl: float | None = None  # stop the epoch loop once approx-KL exceeds it
    # reinforce
    episodes_per_batch: int = 8
    use_baseline: bool = True  # learned value baseline
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
    critic_learning_rate: float | None = None  # None: same as lr
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
    # evaluation and bookkeeping
    eval_every: int = 10_000  # env steps between evaluations (0: only at the end)
    eval_episodes: int = 10
    checkpoint_every: int = 25_000  # env steps between checkpoints (also saved at the end)
    torch_threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


ALGOS: tuple[str, ...] = ("ppo", "a2c", "reinforce", "trpo", "a3c", "ddpg", "td3", "sac")
OFF_POLICY_ALGOS: tuple[str, ...] = ("ddpg", "td3", "sac")  # continuous actions only
# Where the shared defaults above are on-policy choices, the off-policy algorithms start from
# the DDPG/TD3/SAC papers' (and SB3's): one env, ReLU 256-256, constant lr, no grad clipping.
OFF_POLICY_DEFAULTS: dict[str, Any] = {
    "num_envs": 1,
    "num_steps": 1000,
    "anneal_lr": False,
    "max_grad_norm": 0.0,
    "adam_eps": 1e-8,
    "hidden_sizes": [256, 256],
    "activation": "relu",
}
ACTIVATIONS = ("tanh", "relu")
OPTIMIZERS = ("adam", "rmsprop")
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Config))


def preset_path(algo: str, env_id: str) -> Path:
    return PRESET_DIR / f"{algo}_{env_id}.yaml"


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def from_dict(values: dict[str, Any], *, source: str) -> Config:
    """Build a Config from a dict, rejecting unknown keys with the list of valid ones."""
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(unknown)} in {source}; "
            f"valid keys: {', '.join(FIELD_NAMES)}"
        )
    return Config(**values)


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    return data


def resolve(algo: str, env_id: str, overrides: dict[str, Any]) -> tuple[Config, str | None]:
    """Defaults (``OFF_POLICY_DEFAULTS`` over them for ddpg/td3/sac) < preset for (algo, env)
    < overrides. Returns the config and the preset used."""
    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}; valid: {', '.join(ALGOS)}")
    values: dict[str, Any] = dict(OFF_POLICY_DEFAULTS) if algo in OFF_POLICY_ALGOS else {}
    path = preset_path(algo, env_id)
    used = None
    if path.exists():
        values.update(load_yaml(path))
        used = path.name
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["algo"], values["env_id"] = algo, env_id
    cfg = from_dict(values, source=used or "overrides")
    validate(cfg)
    return cfg, used


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value:
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def validate(cfg: Config) -> None:
    """Reject invalid hyperparameters before any env or network is built."""
    if cfg.algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {cfg.algo!r}; valid: {', '.join(ALGOS)}")
    for name in ("lr", "adam_eps", "total_steps", "num_envs", "num_steps", "eval_episodes"):
        _positive(name, getattr(cfg, name))
    for name in ("gamma", "gae_lambda"):
        v = getattr(cfg, name)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {v}")
    for name in ("max_grad_norm", "ent_coef", "vf_coef", "eval_every", "checkpoint_every"):
        _positive(name, getattr(cfg, name), allow_zero=True)
    if cfg.activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {cfg.activation!r}; valid: {', '.join(ACTIVATIONS)}")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if not cfg.hidden_sizes or any(h <= 0 for h in cfg.hidden_sizes):
        raise ConfigError(f"hidden_sizes must be positive layer widths, got {cfg.hidden_sizes}")
    if cfg.torch_threads < 1:
        raise ConfigError(f"torch_threads must be >= 1, got {cfg.torch_threads}")
    if cfg.algo == "ppo":
        _positive("clip_coef", cfg.clip_coef)
        _positive("update_epochs", cfg.update_epochs)
        _positive("num_minibatches", cfg.num_minibatches)
        if cfg.clip_vloss:
            _positive("vf_clip_coef", cfg.vf_clip_coef)
        if cfg.target_kl is not None:
            _positive("target_kl", cfg.target_kl)
        batch = cfg.num_envs * cfg.num_steps
        if batch % cfg.num_minibatches:
            raise ConfigError(
                f"batch of num_envs*num_steps = {cfg.num_envs}*{cfg.num_steps} = {batch} "
                f"is not divisible into num_minibatches = {cfg.num_minibatches}; "
                f"choose a divisor of {batch}"
            )
    if cfg.algo == "reinforce":
        _positive("episodes_per_batch", cfg.episodes_per_batch)
    if cfg.algo in ("trpo", "a3c"):  # their checks live next to them; imported late (cycle)
        from .algos import a3c, trpo

        {"trpo": trpo.validate_trpo, "a3c": a3c.validate_a3c}[cfg.algo](cfg)
    if cfg.algo in OFF_POLICY_ALGOS:  # each algorithm checks its own settings (imported late)
        from .algos import REGISTRY

        REGISTRY[cfg.algo].check_config(cfg)
