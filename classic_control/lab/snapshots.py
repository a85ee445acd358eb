"""Policies to measure: a random initialisation and snapshots of one PPO run.

The PPO run uses the bundled preset for the env; snapshots are saved as
``snapshots/ppo_<percent>.safetensors`` (0 = the initialisation) next to the
run's config, and reused when the lab runs again in the same folder.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import rundir
from ..config import Config
from ..envs import EnvSpec, probe_env
from ..networks import ActorCritic
from ..settings import resolve
from ..trainer import Trainer


def snapshot_path(folder: Path, percent: int) -> Path:
    return folder / f"ppo_{percent:03d}.safetensors"


def ppo_config(env_id: str, seed: int, steps: int | None) -> Config:
    overrides = {"seed": seed, "total_steps": steps, "eval_every": 0, "checkpoint_every": 0}
    return resolve("ppo", env_id, overrides)[0]


def train_snapshots(cfg: Config, folder: Path, percents: list[int]) -> None:
    """Run PPO to ``cfg.total_steps``, saving the policy as it passes each percentage."""
    folder.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, folder / "run")
    (folder / "run").mkdir(parents=True, exist_ok=True)
    meta = {"algo": "ppo", "env_id": cfg.env_id}
    rms = trainer.obs_normalizer().rms.state_dict()
    pending = sorted(percents)
    last = min(cfg.total_steps, -(-pending[-1] * cfg.total_steps // 100))
    bar = tqdm(total=last, unit="step", desc=f"PPO snapshots {cfg.env_id}", dynamic_ncols=True)
    try:
        while pending:
            done = 100 * trainer.env_steps / cfg.total_steps
            while pending and (pending[0] <= done or trainer.env_steps >= cfg.total_steps):
                agent = copy.deepcopy(trainer.agent)
                steps = {"env_steps": trainer.env_steps}
                rundir.save_model(snapshot_path(folder, pending.pop(0)), agent, rms, meta | steps)
            if pending:
                trainer.update_once()
                bar.update(min(trainer.env_steps, last) - bar.n)
    finally:
        bar.close()
        trainer.close()
    rundir.write_config(folder, cfg)


def load_snapshots(
    env_id: str, seed: int, steps: int | None, folder: Path, percents: list[int]
) -> tuple[Config, EnvSpec, dict[int, ActorCritic]]:
    """The snapshots in ``folder``, training the PPO run first if any is missing."""
    cfg = ppo_config(env_id, seed, steps)
    spec = probe_env(env_id)
    saved = folder / rundir.CONFIG
    same_run = saved.is_file() and rundir.read_config(folder) == cfg
    if not same_run or not all(snapshot_path(folder, p).is_file() for p in percents):
        torch.manual_seed(seed)
        train_snapshots(cfg, folder, percents)
    agents = {}
    for p in percents:
        agent = ActorCritic(spec, cfg)
        rundir.load_model(snapshot_path(folder, p), agent)
        agents[p] = agent
    return cfg, spec, agents
