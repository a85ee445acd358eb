"""Experience collection into (num_envs, T) = (batch, time) tensors for the core functions.

Every algorithm gets its batches from a ``Collector`` made by its
``Algorithm.make_collector``:

``VectorCollector`` (PPO, A2C, TRPO, each A3C worker): fixed-length rollouts from a vector env,
with ``terminated``, ``truncated`` and ``next_values`` filled so that
``rlhf_pg.core.gae`` bootstraps truncated steps from V(final observation).
``EpisodeCollector`` (REINFORCE): a batch of whole episodes run side by
side, padded to the longest one and marked by ``mask``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from .envs import (
    EnvSpec,
    ObsNormalizer,
    RewardScaler,
    make_env,
    make_vector_env,
    restore_vector_env,
    vector_env_state,
)
from .networks import ActorCritic


@dataclass
class Batch:
    obs: Tensor  # (N, T, obs_dim)
    actions: Tensor  # (N, T) long or (N, T, act_dim)
    logprobs: Tensor  # (N, T)
    values: Tensor  # (N, T)
    rewards: Tensor  # (N, T), scaled if reward scaling is on
    terminated: Tensor  # (N, T) bool
    truncated: Tensor  # (N, T) bool
    next_values: Tensor | None  # (N, T): V of the observation after each step
    mask: Tensor | None  # (N, T) bool, None = all valid
    bootstrap_value: Tensor | None  # (N,) value after the last step of each row
    steps: int  # env steps in this batch

    def flat(self) -> tuple[Tensor, Tensor]:
        """Observations ``(N*T, obs_dim)`` and actions ``(N*T, ...)`` of every stored step, row
        by row, for one network pass; ``x.view(N, T)`` puts its per-step outputs back."""
        n = self.obs.shape[0] * self.obs.shape[1]
        return self.obs.reshape(n, -1), self.actions.reshape(n, *self.actions.shape[2:])


class EpisodeStats:
    """Undiscounted returns and lengths of the episodes finished during training."""

    def __init__(self, num_envs: int) -> None:
        self.ret = np.zeros(num_envs)
        self.len = np.zeros(num_envs, np.int64)
        self.finished: list[tuple[float, int]] = []

    def step(self, reward: np.ndarray, done: np.ndarray, idx: np.ndarray | None = None) -> None:
        if idx is None:
            idx = np.arange(len(self.ret))
        self.ret[idx] += reward
        self.len[idx] += 1
        if done.any():
            ends = idx[done]
            self.finished += [(float(self.ret[i]), int(self.len[i])) for i in ends]
            self.ret[ends], self.len[ends] = 0.0, 0

    def pop(self) -> list[tuple[float, int]]:
        out, self.finished = self.finished, []
        return out

    def drop_running(self, envs: np.ndarray) -> None:
        """Forget the unfinished episodes of ``envs`` (a bool mask): restarted on resume."""
        self.ret[envs], self.len[envs] = 0.0, 0

    def state_dict(self) -> dict:
        return {"ret": self.ret.tolist(), "len": self.len.tolist()}

    def load_state_dict(self, s: dict) -> None:
        self.ret, self.len = np.asarray(s["ret"]), np.asarray(s["len"], np.int64)


class FinishedEpisodes(Protocol):
    def pop(self) -> list[tuple[float, int]]:
        """(return, length) of the training episodes finished since the last call."""
        ...


class Collector(Protocol):
    """What the trainer drives: batches, finished-episode stats, the observation normaliser
    used for evaluation, and state for checkpoints."""

    stats: FinishedEpisodes
    obs_norm: ObsNormalizer

    def collect(self) -> Batch: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, s: dict) -> None: ...

    def close(self) -> None: ...


def _env_action(spec: EnvSpec, actions: Tensor) -> np.ndarray:
    a = actions.numpy()
    # the env gets the clipped action; the buffer keeps the raw sample for its log-prob
    return a if spec.discrete else np.clip(a, spec.act_low, spec.act_high)


class VectorCollector:
    """Fixed-length rollouts from ``num_envs`` envs, buffers preallocated once."""

    def __init__(self, env_id: str, spec: EnvSpec, cfg, agent: ActorCritic) -> None:
        self.spec, self.agent, self.seed = spec, agent, cfg.seed
        n, t = cfg.num_envs, cfg.num_steps
        self.envs = make_vector_env(env_id, n, **cfg.env_options())
        self.obs_norm = ObsNormalizer(spec.obs_dim, cfg.norm_obs)
        self.reward_scaler = RewardScaler(n, cfg.gamma, cfg.norm_reward)
        self.stats = EpisodeStats(n)
        act_shape = (n, t) if spec.discrete else (n, t, spec.act_dim)
        self.buf = Batch(
            obs=torch.zeros(n, t, spec.obs_dim),
            actions=torch.zeros(act_shape, dtype=torch.long if spec.discrete else torch.float32),
            logprobs=torch.zeros(n, t),
            values=torch.zeros(n, t),
            rewards=torch.zeros(n, t),
            terminated=torch.zeros(n, t, dtype=torch.bool),
            truncated=torch.zeros(n, t, dtype=torch.bool),
            next_values=torch.zeros(n, t),
            mask=None,
            bootstrap_value=None,
            steps=n * t,
        )
        raw, _ = self.envs.reset(seed=cfg.seed)
        self.raw_obs = np.array(raw)
        self.obs = self.obs_norm(self.raw_obs, update=True)

    @torch.inference_mode()
    def collect(self) -> Batch:
        b, agent, n_steps = self.buf, self.agent, self.buf.obs.shape[1]
        finals: list[tuple[np.ndarray, int, np.ndarray]] = []
        obs = self.obs
        for t in range(n_steps):
            obs_t = torch.from_numpy(obs)
            actions, logp, value = agent.act(obs_t)
            b.obs[:, t], b.actions[:, t], b.logprobs[:, t], b.values[:, t] = (
                obs_t,
                actions,
                logp,
                value,
            )
            raw, reward, term, trunc, info = self.envs.step(_env_action(self.spec, actions))
            done = term | trunc
            self.stats.step(reward, done)
            if trunc.any():
                idx = np.flatnonzero(trunc)
                final = np.stack([info["final_obs"][i] for i in idx])
                finals.append((idx, t, self.obs_norm(final)))
            obs = self.obs_norm(raw, update=True)
            b.rewards[:, t] = torch.from_numpy(self.reward_scaler(reward, done))
            b.terminated[:, t] = torch.from_numpy(term)
            b.truncated[:, t] = torch.from_numpy(trunc)
        self.raw_obs, self.obs = np.array(raw), obs
        b.next_values[:, :-1] = b.values[:, 1:]
        b.next_values[:, -1] = agent.value(torch.from_numpy(obs))
        for idx, t, final in finals:
            b.next_values[torch.from_numpy(idx), t] = agent.value(torch.from_numpy(final))
        return b

    def state_dict(self) -> dict:
        return {
            "envs": vector_env_state(self.envs),
            "raw_obs": self.raw_obs.tolist(),
            "obs_rms": self.obs_norm.rms.state_dict(),
            "reward_scaler": self.reward_scaler.state_dict(),
            "stats": self.stats.state_dict(),
        }

    def load_state_dict(self, s: dict) -> None:
        raw, restarted = restore_vector_env(self.envs, s["envs"], s["raw_obs"], self.seed)
        self.raw_obs = raw
        self.obs_norm.rms.load_state_dict(s["obs_rms"])
        self.reward_scaler.load_state_dict(s["reward_scaler"])
        self.reward_scaler.ret[restarted] = 0.0  # as at an episode end
        self.stats.load_state_dict(s["stats"])
        self.stats.drop_running(restarted)
        self.obs = self.obs_norm(self.raw_obs)

    def close(self) -> None:
        self.envs.close()


class EpisodeCollector:
    """``episodes_per_batch`` whole episodes per batch, one env each, stepped side by side."""

    def __init__(self, env_id: str, spec: EnvSpec, cfg, agent: ActorCritic) -> None:
        self.spec, self.agent, self.seed = spec, agent, cfg.seed
        k = cfg.episodes_per_batch
        self.envs = [make_env(env_id, **cfg.env_options()) for _ in range(k)]
        self.obs_norm = ObsNormalizer(spec.obs_dim, cfg.norm_obs)
        self.stats = EpisodeStats(k)
        self.started = False

    def _reset(self) -> np.ndarray:
        seeds = [self.seed + i if not self.started else None for i in range(len(self.envs))]
        self.started = True
        return np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, seeds)])

    @torch.no_grad()  # inference-mode tensors could not be stacked into a batch for autograd
    def collect(self) -> Batch:
        k, agent = len(self.envs), self.agent
        raw = self._reset()
        active = np.ones(k, dtype=bool)
        cols: dict[str, list[Tensor]] = {n: [] for n in ("obs", "act", "logp", "rew", "term")}
        masks, truncated = [], np.zeros(k, dtype=bool)
        final_obs = np.zeros_like(raw, dtype=np.float32)
        while active.any():
            if self.obs_norm.enabled:
                self.obs_norm.rms.update(raw[active])
            obs = torch.from_numpy(self.obs_norm(raw))
            actions, logp, _ = agent.act(obs)
            env_a = _env_action(self.spec, actions)
            reward, term = np.zeros(k), np.zeros(k, dtype=bool)
            idx = np.flatnonzero(active)
            for i in idx:
                o, reward[i], term[i], trunc_i, _ = self.envs[i].step(env_a[i])
                raw[i] = o
                if term[i] or trunc_i:
                    truncated[i] = trunc_i and not term[i]
                    final_obs[i] = o
            done = term | truncated
            self.stats.step(reward[idx], done[idx], idx)
            cols["obs"].append(obs)
            cols["act"].append(actions)
            cols["logp"].append(logp)
            cols["rew"].append(torch.from_numpy(reward).float())
            cols["term"].append(torch.from_numpy(term))
            masks.append(torch.from_numpy(active.copy()))
            active &= ~done
        obs, actions = torch.stack(cols["obs"], 1), torch.stack(cols["act"], 1)
        mask = torch.stack(masks, 1)
        bootstrap = torch.zeros(k)
        if truncated.any():
            v = agent.value(torch.from_numpy(self.obs_norm(final_obs)))
            bootstrap = torch.where(torch.from_numpy(truncated), v, bootstrap)
        return Batch(
            obs=obs,
            actions=actions,
            logprobs=torch.stack(cols["logp"], 1),
            values=torch.zeros(mask.shape),
            rewards=torch.stack(cols["rew"], 1),
            terminated=torch.stack(cols["term"], 1),
            truncated=torch.zeros(mask.shape, dtype=torch.bool),
            next_values=None,
            mask=mask,
            bootstrap_value=bootstrap,
            steps=int(mask.sum()),
        )

    def state_dict(self) -> dict:
        return {
            "started": self.started,
            "rng": [env.unwrapped.np_random.bit_generator.state for env in self.envs],
            "obs_rms": self.obs_norm.rms.state_dict(),
        }

    def load_state_dict(self, s: dict) -> None:
        self.started = bool(s["started"])
        for env, st in zip(self.envs, s["rng"]):
            env.reset(seed=0)  # creates the generator; its state is overwritten next
            env.unwrapped.np_random.bit_generator.state = st
        self.obs_norm.rms.load_state_dict(s["obs_rms"])

    def close(self) -> None:
        for env in self.envs:
            env.close()
