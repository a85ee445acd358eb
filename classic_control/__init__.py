"""REINFORCE, A2C and PPO agents for gymnasium tasks, built on ``rlhf_pg.core``.

Run ``python -m classic_control train --algo ppo --env CartPole-v1 --seed 0``.
Rollouts are (num_envs, T) = (batch, time) tensors, so the advantages,
returns and losses are the same core functions the language-model trainer uses.
"""

from .config import ALGOS, Config, ConfigError

__all__ = ["ALGOS", "Config", "ConfigError"]
