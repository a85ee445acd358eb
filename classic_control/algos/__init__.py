"""Algorithm registry: name -> class. A new algorithm subclasses ``Algorithm`` (its own
``check_config``, and ``make_collector`` if it needs another collector) and registers here."""

from __future__ import annotations

from .a2c import A2C
from .a3c import A3C
from .actor_critic import ActorCritic1Step
from .base import Algorithm
from .ddpg import DDPG
from .ppo import PPO
from .ppo_kl import PPOKL
from .reinforce import Reinforce
from .sac import SAC
from .td3 import TD3
from .trpo import TRPO

REGISTRY: dict[str, type[Algorithm]] = {
    "ppo": PPO,
    "a2c": A2C,
    "reinforce": Reinforce,
    "trpo": TRPO,
    "a3c": A3C,
    "ddpg": DDPG,
    "td3": TD3,
    "sac": SAC,
    "actor_critic": ActorCritic1Step,
    "ppo_kl": PPOKL,
}
ALGOS: tuple[str, ...] = tuple(REGISTRY)

__all__ = [
    "A2C",
    "A3C",
    "ALGOS",
    "DDPG",
    "PPO",
    "PPOKL",
    "REGISTRY",
    "SAC",
    "TD3",
    "TRPO",
    "ActorCritic1Step",
    "Algorithm",
    "Reinforce",
]
