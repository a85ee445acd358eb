"""Replay buffer and the off-policy collector that interleaves env steps with gradient steps.

Transitions are stored as (obs, action in [-1, 1], reward, next_obs,
terminated). The vector env runs in SAME_STEP autoreset mode, so at the
step that ends an episode ``next_obs`` is the true final observation from
``info["final_obs"]``, never the first observation of the next episode; a
time-limit truncation is stored with ``terminated = False`` and so
bootstraps from Q(final observation) in the targets (``rlhf_pg.core.td_target``).

The whole buffer (the filled part only) goes into ``checkpoint.pt``, which
``rlhf_pg.utils.io`` writes atomically: 4 bytes x (2 obs_dim + act_dim + 2) per
transition, e.g. 36 MB for 1M Pendulum transitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from rlhf_pg.core import finite_checks

from .envs import EnvSpec, ObsNormalizer, make_vector_env, restore_vector_env, vector_env_state
from .offpolicy_networks import OffPolicyAgent
from .rollout import EpisodeStats


@dataclass
class Transitions:
    obs: Tensor  # (B, obs_dim)
    actions: Tensor  # (B, act_dim), in [-1, 1]
    rewards: Tensor  # (B,)
    next_obs: Tensor  # (B, obs_dim); the true final observation where an episode ended
    terminated: Tensor  # (B,) bool


class ReplayBuffer:
    """A ring buffer of transitions in one preallocated (capacity, width) tensor.

    One row holds obs | action | reward | next_obs | terminated, so a minibatch
    is a single gather; rows are written through a numpy view of the same
    memory (cheaper per env step than torch indexing).
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.rows = torch.zeros(capacity, 2 * obs_dim + act_dim + 2)
        self.np_rows = self.rows.numpy()

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        """Store one transition per env (arrays with a leading num_envs dimension)."""
        n = len(rewards)
        idx = (self.pos + np.arange(n)) % self.capacity
        o, a = self.obs_dim, self.act_dim
        row = self.np_rows[idx]
        row[:, :o], row[:, o : o + a], row[:, o + a] = obs, actions, rewards
        row[:, o + a + 1 : -1], row[:, -1] = next_obs, terminated
        self.np_rows[idx] = row
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    @property
    def data(self) -> Transitions:
        """Every stored row as named views (the first ``size`` are filled)."""
        return self._split(self.rows)

    def _split(self, rows: Tensor) -> Transitions:
        o, a = self.obs_dim, self.act_dim
        return Transitions(
            obs=rows[:, :o],
            actions=rows[:, o : o + a],
            rewards=rows[:, o + a],
            next_obs=rows[:, o + a + 1 : -1],
            terminated=rows[:, -1] > 0.5,
        )

    def sample(self, batch_size: int) -> Transitions:
        """A uniform minibatch (with replacement) from the torch global RNG (checkpointed)."""
        return self._split(self.rows[torch.randint(self.size, (batch_size,))])

    def state_dict(self) -> dict:
        # clone: a slice would save the whole preallocated storage
        return {"pos": self.pos, "size": self.size, "rows": self.rows[: self.size].clone()}

    def load_state_dict(self, s: dict) -> None:
        n = int(s["size"])
        if n > self.capacity or s["rows"].shape[1] != self.rows.shape[1]:
            raise ValueError(
                f"saved buffer of shape {tuple(s['rows'].shape)} does not fit capacity "
                f"{self.capacity} x width {self.rows.shape[1]}"
            )
        self.rows[:n] = s["rows"]
        self.pos, self.size = int(s["pos"]), n


class Learner(Protocol):
    """What the collector calls back (``algos.offpolicy.OffPolicy``)."""

    agent: OffPolicyAgent

    def explore(self, obs: Tensor) -> Tensor: ...  # actions in [-1, 1]

    def train_step(self, b: Transitions) -> Tensor: ...  # one gradient step, its logged values

    def episode_ends(self, done: np.ndarray) -> None: ...


@dataclass
class Chunk:
    """What one collector call hands to ``Algorithm.update``: its env steps and the stacked
    metrics of the gradient steps it ran (None before learning starts)."""

    steps: int
    logs: Tensor | None


class ReplayCollector:
    """Steps the vector env and, after warm-up, calls the algorithm's gradient step.

    One ``collect()`` = ``num_steps`` iterations of: act, step, store, and at
    the end of a learning phase learn. A phase is ``train_freq`` iterations
    (``train_freq_unit`` step) or lasts until ``train_freq`` episodes have
    finished, counted over all envs (``episode``); it ends with
    ``gradient_steps`` updates, or with as many as it had env steps (-1), once
    ``learning_starts`` env steps are in: SB3's ``train_freq`` /
    ``gradient_steps`` schedule. Phases may span ``collect()`` calls; the
    trainer logs one metrics row per call.
    """

    def __init__(self, env_id: str, spec: EnvSpec, cfg, algo: Learner) -> None:
        self.cfg, self.spec, self.algo, self.seed = cfg, spec, algo, cfg.seed
        self.envs = make_vector_env(env_id, cfg.num_envs, **cfg.env_options())
        self.obs_norm = ObsNormalizer(spec.obs_dim, False)  # identity; evaluation expects one
        self.stats = EpisodeStats(cfg.num_envs)
        self.buffer = ReplayBuffer(cfg.buffer_size, spec.obs_dim, spec.act_dim)
        self.warmup_rng = np.random.default_rng(cfg.seed)
        self.env_steps, self.iteration = 0, 0
        self.phase_steps, self.phase_episodes = 0, 0  # env steps and episodes ended this phase
        raw, _ = self.envs.reset(seed=cfg.seed)
        self.obs = np.array(raw, dtype=np.float32)

    def collect(self) -> Chunk:
        cfg, n = self.cfg, self.cfg.num_envs
        iters = max(1, min(cfg.num_steps, -(-(cfg.total_steps - self.env_steps) // n)))
        logs: list[Tensor] = []
        with finite_checks(False):  # the chunk's losses are scanned once, in update()
            for _ in range(iters):
                self._env_step()
                self.iteration += 1
                if not self._phase_over():
                    continue
                updates = cfg.gradient_steps if cfg.gradient_steps > 0 else self.phase_steps
                self.phase_steps, self.phase_episodes = 0, 0
                if self.env_steps >= cfg.learning_starts:
                    for _ in range(updates):
                        logs.append(self.algo.train_step(self.buffer.sample(cfg.batch_size)))
        return Chunk(steps=iters * n, logs=torch.stack(logs) if logs else None)

    def _phase_over(self) -> bool:
        if self.cfg.train_freq_unit == "episode":
            return self.phase_episodes >= self.cfg.train_freq
        return self.iteration % self.cfg.train_freq == 0

    def _env_step(self) -> None:
        # 1. act: uniform random during warm-up, then the algorithm's exploration policy
        if self.env_steps < self.cfg.learning_starts:
            actions = self.warmup_rng.uniform(-1.0, 1.0, (self.cfg.num_envs, self.spec.act_dim))
            actions = actions.astype(np.float32)
        else:
            with torch.no_grad():
                actions = self.algo.explore(torch.from_numpy(self.obs)).numpy()
        # 2. step with the actions rescaled to the env's bounds
        env_actions = self.algo.agent.to_env(torch.from_numpy(actions)).numpy()
        raw, reward, term, trunc, info = self.envs.step(env_actions)
        done = term | trunc
        # 3. store; where an episode ended, next_obs is its true final observation
        next_obs = np.array(raw, dtype=np.float32)
        for i in np.flatnonzero(done):
            next_obs[i] = info["final_obs"][i]
        self.buffer.add(self.obs, actions, reward, next_obs, term)
        self.stats.step(reward, done)
        self.algo.episode_ends(done)
        self.obs = np.array(raw, dtype=np.float32)
        self.env_steps += self.cfg.num_envs
        self.phase_steps += self.cfg.num_envs
        self.phase_episodes += int(done.sum())

    def state_dict(self) -> dict:
        return {
            "envs": vector_env_state(self.envs),
            "obs": self.obs.tolist(),
            "buffer": self.buffer.state_dict(),
            "stats": self.stats.state_dict(),
            "warmup_rng": self.warmup_rng.bit_generator.state,
            "env_steps": self.env_steps,
            "iteration": self.iteration,
            "phase_steps": self.phase_steps,
            "phase_episodes": self.phase_episodes,
        }

    def load_state_dict(self, s: dict) -> None:
        raw, restarted = restore_vector_env(self.envs, s["envs"], s["obs"], self.seed)
        self.obs = np.array(raw, dtype=np.float32)
        self.buffer.load_state_dict(s["buffer"])
        self.stats.load_state_dict(s["stats"])
        self.stats.drop_running(restarted)
        self.algo.episode_ends(restarted)  # e.g. OU noise starts afresh with the episode
        self.warmup_rng.bit_generator.state = s["warmup_rng"]
        self.env_steps, self.iteration = int(s["env_steps"]), int(s["iteration"])
        # checkpoints from before train_freq_unit: phases were train_freq iterations long
        steps = (self.iteration % self.cfg.train_freq) * self.cfg.num_envs
        self.phase_steps = int(s.get("phase_steps", steps))
        self.phase_episodes = int(s.get("phase_episodes", 0))

    def close(self) -> None:
        self.envs.close()
