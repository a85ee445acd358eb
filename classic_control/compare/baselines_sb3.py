"""Stable-Baselines3 (and sb3-contrib TRPO) runs under our budget and evaluation protocol.

An optional extra (``pip install stable-baselines3==2.9.2 sb3-contrib==2.9.2``).
Hyperparameters are the rl-baselines3-zoo settings for the env where the
zoo has them (listed below), SB3's defaults otherwise. Evaluation is ours:
the same ``Evaluator`` (separate envs, same reset seeds, deterministic
actions), at the first rollout start at or after every multiple of
``eval_every`` (i.e. after the update that crossed it, as for our agents),
and once more after ``learn`` returns. Training time excludes evaluation.
SB3 runs are not resumable mid-run: an interrupted one starts over.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..envs import ObsNormalizer, probe_env
from ..evaluate import Evaluator
from ..metrics import ELAPSED, EVAL_RETURN, EVAL_STD


def _linear(start: float):
    def schedule(progress_remaining: float) -> float:
        return progress_remaining * start

    schedule.__qualname__ = f"lin_{start}"
    return schedule


# the zoo's TD3 (and DDPG) settings, the same for Pendulum, LunarLanderContinuous, BipedalWalker
_ZOO_TD3: dict[str, Any] = dict(
    gamma=0.98,
    buffer_size=200_000,
    learning_starts=10_000,
    noise_type="normal",
    noise_std=0.1,
    gradient_steps=-1,
    train_freq=(1, "episode"),
    learning_rate=1e-3,
    net_arch=[400, 300],
)

# rl-baselines3-zoo settings (hyperparams/{ppo,a2c,trpo}.yml); "lin_x" = linear decay from x
ZOO: dict[tuple[str, str], dict[str, Any]] = {
    ("ppo", "CartPole-v1"): dict(
        n_envs=8,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate="lin_0.001",
        clip_range="lin_0.2",
    ),
    ("ppo", "Acrobot-v1"): dict(
        normalize=True,
        n_envs=16,
        n_steps=256,
        gae_lambda=0.94,
        gamma=0.99,
        n_epochs=4,
        ent_coef=0.0,
    ),
    ("ppo", "LunarLander-v3"): dict(
        n_envs=16,
        n_steps=1024,
        batch_size=64,
        gae_lambda=0.98,
        gamma=0.999,
        n_epochs=4,
        ent_coef=0.01,
    ),
    ("a2c", "CartPole-v1"): dict(n_envs=8, ent_coef=0.0),
    ("a2c", "Acrobot-v1"): dict(normalize=True, n_envs=16, ent_coef=0.0),
    ("trpo", "CartPole-v1"): dict(
        n_envs=2,
        n_steps=512,
        batch_size=512,
        cg_damping=1e-3,
        gae_lambda=0.98,
        gamma=0.99,
        learning_rate=1e-3,
        n_critic_updates=20,
    ),
    ("trpo", "Acrobot-v1"): dict(normalize=True, n_envs=2, n_steps=1024),
    # hyperparams/{td3,ddpg,sac}.yml; "noise_*" become SB3's NormalActionNoise / OU noise
    ("td3", "Pendulum-v1"): dict(_ZOO_TD3),
    ("ddpg", "Pendulum-v1"): dict(_ZOO_TD3),
    ("td3", "LunarLanderContinuous-v3"): dict(_ZOO_TD3),
    ("td3", "BipedalWalker-v3"): dict(_ZOO_TD3),
    ("sac", "Pendulum-v1"): dict(learning_rate=1e-3),
    ("sac", "LunarLanderContinuous-v3"): dict(
        batch_size=256,
        learning_rate="lin_7.3e-4",
        buffer_size=1_000_000,
        gamma=0.99,
        tau=0.01,
        train_freq=1,
        gradient_steps=1,
        learning_starts=10_000,
        net_arch=[400, 300],
    ),
    ("sac", "MountainCarContinuous-v0"): dict(
        learning_rate=3e-4,
        buffer_size=50_000,
        batch_size=512,
        ent_coef=0.1,
        train_freq=32,
        gradient_steps=32,
        gamma=0.9999,
        tau=0.01,
        learning_starts=0,
        use_sde=True,
        log_std_init=-3.67,
        net_arch=[64, 64],
    ),
}


def _classes() -> dict[str, type]:
    from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3

    classes = {"ppo": PPO, "a2c": A2C, "ddpg": DDPG, "td3": TD3, "sac": SAC}
    try:
        from sb3_contrib import TRPO

        classes["trpo"] = TRPO
    except ImportError:  # only TRPO needs sb3-contrib
        pass
    return classes


def _off_policy_kwargs(hp: dict[str, Any], act_dim: int) -> None:
    """Zoo shorthands -> SB3 arguments: action-noise objects and policy_kwargs (in place)."""
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    if "noise_type" in hp:
        kind, std = hp.pop("noise_type"), hp.pop("noise_std")
        cls = NormalActionNoise if kind == "normal" else OrnsteinUhlenbeckActionNoise
        hp["action_noise"] = cls(np.zeros(act_dim), std * np.ones(act_dim))
    policy_kwargs = {key: hp.pop(key) for key in ("net_arch", "log_std_init") if key in hp}
    if policy_kwargs:
        hp["policy_kwargs"] = policy_kwargs


class SB3Policy:
    """What ``Evaluator`` needs from an agent: the deterministic action for a batch."""

    def __init__(self, model, vecnorm) -> None:
        self.model, self.vecnorm = model, vecnorm

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.numpy()
        if self.vecnorm is not None:
            x = self.vecnorm.normalize_obs(x)
        actions, _ = self.model.predict(x, deterministic=True)
        return torch.as_tensor(np.asarray(actions))


def _grid_callback(evaluate, every: int, total: int):
    from stable_baselines3.common.callbacks import BaseCallback

    class GridEval(BaseCallback):
        """Evaluate after the update that crossed each multiple of ``every``."""

        def __init__(self) -> None:
            super().__init__()
            self.next = every or total

        def _on_rollout_start(self) -> None:
            if self.num_timesteps >= self.next:
                evaluate(self.num_timesteps)
                while self.next <= self.num_timesteps:
                    self.next += every or total

        def _on_step(self) -> bool:
            return True

    return GridEval()


def build_model(algo: str, env_id: str, seed: int):
    """An SB3 ``algo`` model with the zoo settings for ``env_id`` (SB3 defaults where the zoo
    has none). Returns ``(model, vec_env, vecnorm)``; ``vecnorm`` is None without
    observation normalisation."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    hp = dict(ZOO.get((algo, env_id), {}))
    n_envs, normalize = hp.pop("n_envs", 1), hp.pop("normalize", False)
    for key, value in hp.items():
        if isinstance(value, str) and value.startswith("lin_"):
            hp[key] = _linear(float(value[4:]))
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    _off_policy_kwargs(hp, int(np.prod(env.action_space.shape or (1,))))
    vecnorm = VecNormalize(env, gamma=hp.get("gamma", 0.99)) if normalize else None
    model = _classes()[algo]("MlpPolicy", vecnorm or env, seed=seed, device="cpu", verbose=0, **hp)
    return model, env, vecnorm


def run_sb3(spec, out) -> dict[str, Any]:
    """Train ``spec.algo`` = "sb3-<algo>" and return the record body (curve, final eval, time)."""
    algo = spec.algo.removeprefix("sb3-")
    settings = ZOO.get((algo, spec.env_id), {})
    model, env, vecnorm = build_model(algo, spec.env_id, spec.seed)
    obs_spec = probe_env(spec.env_id)
    evaluator = Evaluator(spec.env_id, obs_spec, spec.eval_episodes, spec.seed)
    identity = ObsNormalizer(obs_spec.obs_dim, False)
    policy = SB3Policy(model, vecnorm)
    curve: list[dict[str, Any]] = []
    clock = {"start": 0.0, "eval": 0.0}

    def evaluate(step: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        train_s = t0 - clock["start"] - clock["eval"]
        returns, _ = evaluator.run(policy, identity)
        clock["eval"] += time.perf_counter() - t0
        point = {
            "env_steps": int(step),
            EVAL_RETURN: float(np.mean(returns)),
            EVAL_STD: float(np.std(returns)),
            ELAPSED: train_s,
            "returns": returns,
        }
        if curve and curve[-1]["env_steps"] == point["env_steps"]:
            curve.pop()  # the same step evaluated again after the final update
        curve.append(point)
        return point

    clock["start"] = time.perf_counter()
    try:
        model.learn(
            total_timesteps=spec.steps,
            callback=_grid_callback(evaluate, spec.eval_every, spec.steps),
        )
        final = evaluate(model.num_timesteps)
    finally:
        evaluator.close()
        (vecnorm or env).close()
    train_time = final[ELAPSED]
    returns = final.pop("returns")
    for point in curve:
        point.pop("returns", None)
    return {
        "source": "stable-baselines3",
        "preset": f"rl-baselines3-zoo {algo} {spec.env_id}" if settings else "sb3 defaults",
        "config": {"algo": algo, "policy": "MlpPolicy", **settings},
        "curve": curve,
        "final_eval": {
            "mean_return": final[EVAL_RETURN],
            "std_return": final[EVAL_STD],
            "returns": returns,
        },
        "env_steps": int(model.num_timesteps),
        "train_time_s": train_time,
        "steps_per_s": model.num_timesteps / max(train_time, 1e-9),
        "session_wall_clock_s": time.perf_counter() - clock["start"],
        "resumed": False,
    }
