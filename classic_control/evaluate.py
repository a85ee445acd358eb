"""Deterministic evaluation on separate envs, and optional video of one episode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .envs import EnvSpec, ObsNormalizer, make_env
from .networks import ActorCritic

EVAL_SEED_OFFSET = 1_000_000  # eval episodes never share a reset seed with training


class Evaluator:
    """Runs ``episodes`` deterministic episodes side by side, one env each.

    Episode k is reset with seed ``seed + EVAL_SEED_OFFSET + k`` every time,
    so successive evaluations of a run score the policy on the same starts.
    """

    def __init__(
        self,
        env_id: str,
        spec: EnvSpec,
        episodes: int,
        seed: int,
        max_episode_steps: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.spec, self.seed = spec, seed + EVAL_SEED_OFFSET
        options = {"max_episode_steps": max_episode_steps, "env_kwargs": env_kwargs}
        self.envs = [make_env(env_id, **options) for _ in range(episodes)]

    @torch.inference_mode()
    def run(self, agent: ActorCritic, obs_norm: ObsNormalizer) -> tuple[list[float], list[int]]:
        k = len(self.envs)
        raw = np.stack([e.reset(seed=self.seed + i)[0] for i, e in enumerate(self.envs)])
        active = np.ones(k, dtype=bool)
        returns, lengths = np.zeros(k), np.zeros(k, np.int64)
        while active.any():
            actions = agent.mode(torch.from_numpy(obs_norm(raw))).numpy()
            if not self.spec.discrete:
                actions = np.clip(actions, self.spec.act_low, self.spec.act_high)
            for i in np.flatnonzero(active):
                raw[i], r, term, trunc, _ = self.envs[i].step(actions[i])
                returns[i] += r
                lengths[i] += 1
                active[i] = not (term or trunc)
        return returns.tolist(), lengths.tolist()

    def close(self) -> None:
        for e in self.envs:
            e.close()


def summary(returns: list[float], lengths: list[int]) -> dict:
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "min_return": float(np.min(returns)),
        "max_return": float(np.max(returns)),
        "mean_length": float(np.mean(lengths)),
        "episodes": len(returns),
        "returns": [float(r) for r in returns],
    }


@torch.inference_mode()
def record_video(
    env_id: str,
    spec: EnvSpec,
    agent: ActorCritic,
    obs_norm: ObsNormalizer,
    path: Path,
    seed: int,
    max_episode_steps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Render one deterministic episode to MP4 (if imageio-ffmpeg is installed) or GIF."""
    import imageio.v2 as imageio

    env = make_env(
        env_id, render_mode="rgb_array", max_episode_steps=max_episode_steps, env_kwargs=env_kwargs
    )
    obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET)
    frames, done = [env.render()], False
    while not done:
        a = agent.mode(torch.from_numpy(obs_norm(obs[None])))[0].numpy()
        if not spec.discrete:
            a = np.clip(a, spec.act_low, spec.act_high)
        obs, _, term, trunc, _ = env.step(a)
        frames.append(env.render())
        done = term or trunc
    env.close()
    fps = int(env.metadata.get("render_fps", 30))
    path = Path(path)
    if path.suffix == ".mp4":
        try:
            imageio.mimsave(path, frames, fps=fps)
            return path
        except Exception:  # no ffmpeg backend: fall back to GIF
            path = path.with_suffix(".gif")
    # GIF: every other frame keeps files small; duration is per frame in ms
    imageio.mimsave(path, frames[::2], duration=2000 / fps, loop=0)
    return path
