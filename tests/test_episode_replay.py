"""Resuming rebuilds each env's mid-episode state by replaying its episode; where a replay
misses, that episode restarts instead of the checkpoint being lost."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest

from classic_control.envs import make_env, make_vector_env, restore_vector_env, vector_env_state
from classic_control.settings import resolve
from classic_control.trainer import Trainer


@pytest.mark.parametrize("env_id", ["BipedalWalker-v3", "LunarLanderContinuous-v3"])
def test_a_box2d_episode_replays_exactly_after_earlier_episodes(env_id):
    # BipedalWalker keeps one Box2D world for life: without a fresh world per episode the
    # replay of the second episode in a new env diverges within a few steps
    live = make_vector_env(env_id, 2)
    obs, _ = live.reset(seed=3)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(700):
        obs, _, term, trunc, _ = live.step(
            rng.uniform(-1, 1, (2, *live.single_action_space.shape)).astype(np.float32)
        )
        ended += int((term | trunc).sum())
    assert ended >= 4  # the episodes checked here follow earlier ones in the same env
    states = vector_env_state(live)
    assert all(len(s["actions"]) > 0 for s in states)  # mid-episode

    fresh = make_vector_env(env_id, 2)
    rebuilt, restarted = restore_vector_env(fresh, states, obs, seed=3)
    assert not restarted.any()
    np.testing.assert_array_equal(rebuilt, obs)


@pytest.mark.parametrize(
    ("algo", "kw"),
    [
        ("td3", {"num_envs": 1, "num_steps": 50, "learning_starts": 10**6}),
        ("ppo", {"num_envs": 1, "num_steps": 50, "num_minibatches": 2, "norm_reward": True}),
    ],
)
def test_a_replay_that_misses_restarts_that_episode_and_drops_its_partial_return(algo, kw):
    cfg = resolve(algo, "Pendulum-v1", {"seed": 4, **kw})[0]
    a = Trainer(cfg, "unused")
    for _ in range(2):  # 100 steps into the first 200-step Pendulum episode
        a.collector.collect()
    state = copy.deepcopy(a.collector.state_dict())
    key = "obs" if algo == "td3" else "raw_obs"
    state[key][0][0] += 0.5  # as if the env were not a function of its RNG and actions

    b = Trainer(cfg, "unused")
    with pytest.warns(UserWarning, match=r"env 0: replaying its saved episode \(100 steps\)"):
        b.collector.load_state_dict(state)
    # the episode starts again from the first state its saved RNG gives
    plain = gym.make("Pendulum-v1")
    plain.reset(seed=0)
    plain.unwrapped.np_random.bit_generator.state = state["envs"][0]["reset_rng"]
    first, _ = plain.reset()
    restored = b.collector.obs if algo == "td3" else b.collector.raw_obs
    np.testing.assert_allclose(restored[0], first, atol=1e-6)
    if algo == "ppo":
        assert b.collector.reward_scaler.ret[0] == 0.0 != a.collector.reward_scaler.ret[0]

    finished = []
    while not finished:
        b.collector.collect()
        finished = b.collector.stats.pop()
    # a whole 200-step episode, not the 100 steps before the checkpoint plus 200 after
    assert [n for _, n in finished] == [200]
    a.close()
    b.close()


def test_a_bipedalwalker_episode_does_not_depend_on_the_episodes_before_it():
    # what evaluation relies on: the same seed and actions in a used env and in a new one
    # (as after a resume) give the same episode
    actions = np.random.default_rng(1).uniform(-1, 1, (300, 4)).astype(np.float32)

    def episode(env, seed):
        obs = [env.reset(seed=seed)[0]]
        for a in actions:
            o, _, term, trunc, _ = env.step(a)
            obs.append(o)
            if term or trunc:
                break
        return np.array(obs)

    used = make_env("BipedalWalker-v3")
    for seed in (1, 2, 3):
        episode(used, seed)
    np.testing.assert_array_equal(episode(used, 7), episode(make_env("BipedalWalker-v3"), 7))
