"""The off-policy learning schedule: phases of train_freq steps or episodes, gradient_steps -1,
and the phase counters in the checkpoint (SB3's train_freq=(n, unit) / gradient_steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_offpolicy_agents import _cfg, _run

from classic_control.trainer import Trainer


def _record_phases(col):
    """Replace the gradient step by a recorder of the env step count at each call."""
    calls: list[int] = []

    def step(batch):
        calls.append(col.env_steps)
        return torch.zeros(len(col.algo.logged))

    col.algo.train_step = step
    return calls


def test_episode_phases_train_at_each_episode_end_for_its_length():
    """train_freq (1, episode), gradient_steps -1 (the zoo's TD3): after every episode, as many
    updates as it had steps; LunarLanderContinuous's episodes differ in length."""
    cfg = _cfg(
        "td3", "LunarLanderContinuous-v3", total_steps=1500, num_steps=1500, learning_starts=0,
        train_freq=1, train_freq_unit="episode", gradient_steps=-1,
    )  # fmt: skip
    trainer = Trainer(cfg, "unused")
    col = trainer.collector
    calls = _record_phases(col)
    col.collect()
    lengths = [n for _, n in col.stats.pop()]  # the episodes, as the env reported them
    assert len(lengths) >= 2 and len(set(lengths)) >= 2
    ends = np.cumsum(lengths)
    # one phase per finished episode, at its last step, with one update per step it had
    assert sorted(set(calls)) == list(ends)
    assert [calls.count(int(e)) for e in ends] == lengths
    assert col.phase_steps == 1500 - ends[-1] and col.phase_episodes == 0
    trainer.close()


def test_episode_phases_count_episodes_over_all_envs_and_wait_for_learning_starts():
    # Pendulum's episodes all end at 200 steps, so with 2 envs two episodes end at once: a
    # phase of train_freq 3 episodes ends at every second pair (800, 1600, 2400 env steps),
    # and the one at 800 is before learning_starts (900): no updates
    cfg = _cfg(
        "sac", num_envs=2, total_steps=2400, num_steps=600, learning_starts=900,
        train_freq=3, train_freq_unit="episode", gradient_steps=5,
    )  # fmt: skip
    trainer = Trainer(cfg, "unused")
    col = trainer.collector
    calls = _record_phases(col)
    col.collect()
    col.collect()
    assert calls == [1600] * 5 + [2400] * 5
    trainer.close()


def test_gradient_steps_minus_one_with_step_phases_is_the_phase_env_steps():
    cfg = _cfg("ddpg", num_envs=2, num_steps=30, learning_starts=0, train_freq=3,
               gradient_steps=-1)  # fmt: skip
    trainer = Trainer(cfg, "unused")
    col = trainer.collector
    calls = _record_phases(col)
    col.collect()
    assert calls == [e for e in range(6, 61, 6) for _ in range(6)]
    trainer.close()


@pytest.mark.slow
def test_resume_inside_an_episode_phase_equals_uninterrupted(tmp_path):
    # Pendulum's phases end every 200 steps; the cut's checkpoint at 300 falls inside one, so
    # the resumed run must know the phase already had 100 steps (its update count is 200)
    cfg = _cfg("td3", checkpoint_every=100, train_freq=1, train_freq_unit="episode",
               gradient_steps=-1)  # fmt: skip
    full = _run(cfg, tmp_path / "full")
    assert _run(cfg, tmp_path / "cut", stop_after=3) is None
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert ckpt["collector"]["env_steps"] == 300 and ckpt["collector"]["phase_steps"] == 100
    resumed = _run(cfg, tmp_path / "cut", resume=True)
    assert resumed["returns"] == full["returns"]
    wa = load_file(tmp_path / "cut" / "model_final.safetensors")
    wb = load_file(tmp_path / "full" / "model_final.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoint_without_phase_counters_resumes_step_phases(tmp_path):
    """Checkpoints written before train_freq_unit existed hold no phase counters."""
    cfg = _cfg("sac", num_steps=50, train_freq=4, gradient_steps=-1)
    trainer = Trainer(cfg, "unused")
    col = trainer.collector
    col.collect()
    state = col.state_dict()
    del state["phase_steps"], state["phase_episodes"]
    other = Trainer(cfg, "unused2")
    other.collector.load_state_dict(state)
    assert other.collector.phase_steps == 50 % 4 == col.phase_steps
    trainer.close()
    other.close()
