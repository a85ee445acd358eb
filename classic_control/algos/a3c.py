"""A3C: asynchronous advantage actor-critic (Mnih et al., 2016) with torch.multiprocessing.

``num_workers`` processes each own a local copy of the network and
``num_envs`` envs of their own. A worker collects ``num_steps`` steps per
env with its local copy, computes n-step bootstrapped returns with the
core's ``gae`` at ``lam = 1`` (truncated episodes bootstrap from the value
of their final observation), backpropagates the actor-critic loss into its
local copy, then, under a lock, hands its gradients to the shared model and
steps a shared Adam whose moment estimates live in shared memory, and
reloads the new shared weights. Worker seeds are derived from the run seed.

The training loop of ``Trainer`` stays the same: the worker pool plays the
collector. Its ``collect`` waits until the workers have taken another chunk
of env steps; at every evaluation or checkpoint step the workers pause, so
an evaluation scores the policy at that step and a checkpoint is consistent.
A3C is asynchronous, so runs are not bit-reproducible; a resumed run
restarts its workers from the checkpointed shared model and optimizer with
fresh worker seeds.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import time

import numpy as np
import torch
import torch.multiprocessing as mp
from torch import Tensor, nn

from ..config import Config, ConfigError
from ..envs import EnvSpec, ObsNormalizer
from ..lifetime import exit_with_parent, ignore_stop_signals
from ..networks import ActorCritic
from ..rollout import Batch, Collector, VectorCollector
from .a2c import actor_critic_loss
from .base import Algorithm, gae_advantages

_METRICS = ("loss/policy", "loss/value", "loss/entropy", "grad_norm")
_POLL_S = 0.002
_STALL_S = 600.0  # no finished rollout for this long: the workers are stuck


def make_shared_adam(cfg: Config, params: list[nn.Parameter]) -> torch.optim.Adam:
    """Adam whose state tensors exist up front and live in shared memory."""
    opt = torch.optim.Adam(params, lr=cfg.learning_rate, eps=cfg.adam_eps, foreach=True)
    for p in params:
        opt.state[p] = {
            "step": torch.zeros((), dtype=torch.float32),
            "exp_avg": torch.zeros_like(p),
            "exp_avg_sq": torch.zeros_like(p),
        }
    share_optimizer_state(opt)
    return opt


def share_optimizer_state(opt: torch.optim.Optimizer) -> None:
    for state in opt.state.values():
        for t in state.values():
            if isinstance(t, Tensor):
                t.share_memory_()


def worker_seeds(seed: int, restarts: int, n: int) -> list[int]:
    """Independent, reproducible seeds for the workers of one (re)start of a run."""
    children = np.random.SeedSequence([seed, restarts]).spawn(n)
    return [int(c.generate_state(1)[0]) for c in children]


@dataclasses.dataclass
class _Shared:
    """What the main process and the workers share."""

    agent: ActorCritic
    adam_state: list[dict[str, Tensor]]
    lock: object  # serialises the shared optimizer steps
    counter: object  # env steps taken by finished rollouts (int64 Value, its lock guards gate/busy)
    gate: object  # workers start no rollout while counter >= gate
    busy: object  # workers inside a rollout/update
    ready: object  # workers done with their setup (imports, envs)
    stop: object
    episodes: object  # queue of finished training episodes (return, length)
    metrics: Tensor  # (workers, len(_METRICS) + 1) running sums and a count
    updates: Tensor  # (workers,) shared-model updates made by each worker


def _worker(
    rank: int, seed: int, env_id: str, spec: EnvSpec, cfg: Config, sh: _Shared, parent: int
) -> None:
    # the parent stops the workers (``WorkerPool.close``); if it is killed they go with it
    exit_with_parent(parent)
    ignore_stop_signals()
    torch.set_num_threads(1)
    torch.set_flush_denormal(cfg.flush_denormal)  # see Config.flush_denormal
    torch.manual_seed(seed)
    wcfg = dataclasses.replace(cfg, seed=seed)
    shared_params = list(sh.agent.parameters())
    opt = torch.optim.Adam(shared_params, lr=cfg.learning_rate, eps=cfg.adam_eps, foreach=True)
    for p, state in zip(shared_params, sh.adam_state):
        opt.state[p] = state  # the shared tensors themselves: steps update them in place
    local = ActorCritic(spec, wcfg)
    local.load_state_dict(sh.agent.state_dict())
    local_params = list(local.parameters())
    collector = VectorCollector(env_id, spec, wcfg, local)
    counter, steps = sh.counter, wcfg.num_envs * wcfg.num_steps
    with counter.get_lock():
        sh.ready.value += 1
    try:
        while not sh.stop.is_set():
            with counter.get_lock():
                go = counter.value < sh.gate.value
                if go:
                    sh.busy.value += 1
            if not go:
                time.sleep(_POLL_S)
                continue
            try:
                b = collector.collect()
                adv, ret = gae_advantages(wcfg, b, lam=1.0)  # n-step bootstrapped returns
                loss = actor_critic_loss(wcfg, local, b, adv, ret)
                local.zero_grad(set_to_none=True)
                loss.total.backward()
                norm = nn.utils.clip_grad_norm_(local_params, cfg.max_grad_norm or float("inf"))
                left = max(0.0, 1.0 - counter.value / cfg.total_steps)
                with sh.lock:
                    for g in opt.param_groups:
                        g["lr"] = cfg.learning_rate * (left if cfg.anneal_lr else 1.0)
                    for sp, lp in zip(shared_params, local_params):
                        sp.grad = lp.grad
                    opt.step()
                    local.load_state_dict(sh.agent.state_dict())
                with torch.no_grad():
                    parts = (loss.policy, loss.value, loss.entropy, norm, torch.ones(()))
                    sh.metrics[rank] += torch.stack(parts)
                    sh.updates[rank] += 1
                episodes = collector.stats.pop()
                if episodes:
                    sh.episodes.put(episodes)
            finally:
                with counter.get_lock():
                    counter.value += steps
                    sh.busy.value -= 1
    finally:
        collector.close()


class _QueueStats:
    """``EpisodeStats``-like view of the episodes the workers report."""

    def __init__(self, q) -> None:
        self.q = q

    def pop(self) -> list[tuple[float, int]]:
        out: list[tuple[float, int]] = []
        while True:
            try:
                out += self.q.get_nowait()
            except queue.Empty:
                return out


class WorkerPool:
    """The A3C workers, driven by ``Trainer`` through the collector interface."""

    def __init__(
        self, env_id: str, spec: EnvSpec, cfg: Config, agent: ActorCritic, opt: torch.optim.Adam
    ) -> None:
        self.env_id, self.spec, self.cfg = env_id, spec, cfg
        ctx = mp.get_context("spawn")
        n = cfg.num_workers
        self.ctx, self.procs, self.restarts = ctx, [], 0
        self.sh = _Shared(
            agent=agent,
            adam_state=[opt.state[p] for p in agent.parameters()],
            lock=ctx.Lock(),
            counter=ctx.Value("q", 0),
            gate=ctx.Value("q", 0),
            busy=ctx.Value("i", 0),
            ready=ctx.Value("i", 0),
            stop=ctx.Event(),
            episodes=ctx.Queue(),
            metrics=torch.zeros(n, len(_METRICS) + 1).share_memory_(),
            updates=torch.zeros(n, dtype=torch.long).share_memory_(),
        )
        self.obs_norm = ObsNormalizer(spec.obs_dim, False)  # a3c runs without normalisation
        self.stats = _QueueStats(self.sh.episodes)
        self.last = 0
        rollout = n * cfg.num_envs * cfg.num_steps
        self.chunk = max(rollout, 1000)  # env steps between two rows of the metrics log

    @property
    def steps(self) -> int:
        return int(self.sh.counter.value)

    def _next_barrier(self, steps: int) -> int:
        """Next step at which the trainer evaluates or checkpoints: the workers pause there."""
        cfg = self.cfg
        points = [cfg.total_steps]
        for every in (cfg.eval_every, cfg.checkpoint_every):
            if every:
                points.append((steps // every + 1) * every)
        return min(points)

    def _start(self) -> None:
        seeds = worker_seeds(self.cfg.seed, self.restarts, self.cfg.num_workers)
        for rank, seed in enumerate(seeds):
            p = self.ctx.Process(
                target=_worker,
                args=(rank, seed, self.env_id, self.spec, self.cfg, self.sh, os.getpid()),
                daemon=True,
            )
            p.start()
            self.procs.append(p)
        # no worker starts training while another is still importing (short runs would
        # otherwise be one worker's run)
        while self.sh.ready.value < len(self.procs):
            time.sleep(_POLL_S)
            self._check_alive()

    def _check_alive(self) -> None:
        for rank, p in enumerate(self.procs):
            if p.exitcode is not None:
                raise RuntimeError(f"A3C worker {rank} exited with code {p.exitcode}")

    def collect(self) -> Batch:
        sh = self.sh
        if not self.procs:
            self._start()
        with sh.counter.get_lock():
            barrier = self._next_barrier(sh.counter.value)
            sh.gate.value = barrier
        start, seen, last_change = self.steps, self.steps, time.monotonic()
        while True:
            time.sleep(_POLL_S)
            self._check_alive()
            with sh.counter.get_lock():
                now, busy = sh.counter.value, sh.busy.value
            if now != seen:
                seen, last_change = now, time.monotonic()
            elif time.monotonic() - last_change > _STALL_S:
                raise RuntimeError(f"A3C workers made no progress for {_STALL_S:.0f} s")
            if now >= barrier and busy == 0:
                break
            if barrier > now >= start + self.chunk:
                break
        steps, self.last = now - self.last, now
        empty = torch.empty(0)
        return Batch(empty, empty, empty, empty, empty, empty, empty, None, None, None, steps)

    def pop_metrics(self) -> dict[str, float]:
        with self.sh.lock:
            sums = self.sh.metrics.sum(0)
            self.sh.metrics.zero_()
        count = max(float(sums[-1]), 1.0)
        out = {k: float(v) / count for k, v in zip(_METRICS, sums[:-1])}
        out["a3c/worker_updates"] = float(sums[-1])
        out["a3c/worker_updates_min_total"] = float(self.sh.updates.min())
        return out

    def pause(self) -> None:
        """Let the running rollouts finish and start no new one (a consistent checkpoint
        between two barriers, when a run is asked to stop)."""
        if not self.procs:
            return
        sh = self.sh
        with sh.counter.get_lock():
            sh.gate.value = sh.counter.value
        deadline = time.monotonic() + _STALL_S
        while time.monotonic() < deadline:
            with sh.counter.get_lock():
                if sh.busy.value == 0:
                    return
            self._check_alive()
            time.sleep(_POLL_S)

    def state_dict(self) -> dict:
        # the steps the trainer has counted: after ``pause`` the workers may have taken a few
        # more, which the resumed run does not count twice
        return {"steps": self.last, "restarts": self.restarts}

    def load_state_dict(self, s: dict) -> None:
        self.sh.counter.value = self.last = int(s["steps"])
        self.restarts = int(s["restarts"]) + 1

    def close(self) -> None:
        self.sh.stop.set()
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()  # they ignore SIGTERM (see _worker)
                p.join()
        self.procs = []


class A3C(Algorithm):
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        if cfg.num_workers < 1:
            raise ConfigError(f"num_workers must be >= 1 for a3c, got {cfg.num_workers}")
        if cfg.critic_learning_rate is not None:  # its shared Adam holds one group
            raise ConfigError(
                "a3c has one learning rate; got critic_learning_rate="
                f"{cfg.critic_learning_rate}, set it to none"
            )
        if cfg.norm_obs or cfg.norm_reward:
            raise ConfigError(
                "a3c does not support norm_obs/norm_reward (each worker would keep its own "
                "statistics); set both false"
            )

    def __init__(self, cfg: Config, agent: ActorCritic) -> None:
        self.cfg, self.agent = cfg, agent
        agent.share_memory()
        self.params = list(agent.parameters())
        self.optimizer = make_shared_adam(cfg, self.params)
        self.workers: WorkerPool | None = None

    def make_collector(self, env_id: str, spec: EnvSpec) -> Collector:
        """The worker pool: its workers collect and learn; ``collect`` waits for them."""
        self.workers = WorkerPool(env_id, spec, self.cfg, self.agent, self.optimizer)
        return self.workers

    def set_lr(self, lr: float) -> None:
        """The workers anneal the learning rate themselves from the shared step counter."""

    def update(self, batch: Batch, progress_left: float) -> dict[str, float]:
        assert self.workers is not None, "the worker pool is created with the trainer"
        return self.workers.pop_metrics()

    def load_state_dict(self, s: dict) -> None:
        self.optimizer.load_state_dict(s["optimizer"])
        share_optimizer_state(self.optimizer)  # loading replaced the shared tensors
        if self.workers is not None:
            self.workers.sh.adam_state = [self.optimizer.state[p] for p in self.params]
