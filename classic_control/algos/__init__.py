"""Algorithm registry: name -> class. New algorithms register here and in config.ALGOS."""

from __future__ import annotations

from .a2c import A2C
from .a3c import A3C
from .actor_critic import ActorCritic1Step
from .base import Algorithm
from .ppo import PPO
from .ppo_kl import PPOKL
from .reinforce import Reinforce
from .trpo import TRPO

REGISTRY: dict[str, type[Algorithm]] = {
    "ppo": PPO,
    "a2c": A2C,
    "reinforce": Reinforce,
    "trpo": TRPO,
    "a3c": A3C,
    "actor_critic": ActorCritic1Step,
    "ppo_kl": PPOKL,
}

__all__ = [
    "A2C",
    "A3C",
    "PPO",
    "PPOKL",
    "REGISTRY",
    "TRPO",
    "ActorCritic1Step",
    "Algorithm",
    "Reinforce",
]
