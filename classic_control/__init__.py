"""REINFORCE, A2C, PPO, TRPO and A3C agents for gymnasium tasks, built on ``rlhf_pg.core``.

Run ``python -m classic_control train --algo ppo --env CartPole-v1 --seed 0``.
Rollouts are (num_envs, T) = (batch, time) tensors, so the advantages,
returns and losses are the same core functions the language-model trainer uses.

Modules, bottom up: ``config`` (the settings dataclass), ``envs``, ``networks``,
``rollout`` (collectors), ``algos`` (one module per algorithm and the registry),
``settings`` (defaults < preset < flags, checked), ``rundir`` (the run folder),
``trainer`` (the loop), ``compare`` (multi-seed sweeps), ``__main__`` (the CLI).
"""

import os

# passive OpenMP waiting before torch loads: see rlhf_pg/__init__.py
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .algos import ALGOS  # noqa: E402
from .config import Config, ConfigError  # noqa: E402

__all__ = ["ALGOS", "Config", "ConfigError"]
