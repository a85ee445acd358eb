"""The lab's gradient estimators on a tiny MDP where every trajectory can be enumerated.

The exact gradient of J = E[sum_t gamma^t r_t] comes from autograd through
the enumerated objective (an independent computation); the lab's estimators
(core returns/GAE weights, per-episode gradients by ``torch.func``) must
match it in expectation, exactly when averaged over all trajectories with
their probabilities and within a confidence bound when sampled.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from classic_control.config import Config
from classic_control.envs import EnvSpec
from classic_control.lab.estimators import (
    episode_gradients,
    estimator_names,
    estimator_weights,
    policy_params,
)
from classic_control.networks import ActorCritic

N_STATES, HORIZON, GAMMA = 5, 3, 0.9
# r(s, a) > 0, so a baseline has something to remove
REWARDS = torch.tensor([[1.0, 2.0], [0.5, 3.0], [2.0, 1.0], [1.5, 0.2], [0.0, 0.0]])


def step(s: int, a: int, t: int) -> tuple[int, bool]:
    """Action 0 moves one state right, action 1 two; state 4 or the horizon ends the episode."""
    nxt = min(s + 1 + a, N_STATES - 1)
    return nxt, nxt == N_STATES - 1 or t + 1 == HORIZON


def trajectories() -> list[tuple[list[int], list[int]]]:
    """Every (states, actions) path from state 0."""
    out = []
    for actions in itertools.product((0, 1), repeat=HORIZON):
        s, states, taken = 0, [], []
        for t, a in enumerate(actions):
            states.append(s)
            taken.append(a)
            s, done = step(s, a, t)
            if done:
                break
        if (states, taken) not in out:
            out.append((states, taken))
    return out


@pytest.fixture(scope="module")
def mdp():
    torch.manual_seed(0)
    spec = EnvSpec(obs_dim=N_STATES, discrete=True, act_dim=2, act_low=None, act_high=None)
    agent = ActorCritic(spec, Config(hidden_sizes=[8]))
    with torch.no_grad():  # a policy far from uniform, so the estimators differ
        # drawn as an nn.Linear's (out, in) weight: the policy this test was written for
        head = agent.policy_head.layers[0].weight
        head.copy_(torch.empty(head.shape[::-1]).normal_(0.0, 1.0).t())
    paths = trajectories()
    n, eye = len(paths), torch.eye(N_STATES)
    obs = torch.zeros(n, HORIZON, N_STATES)
    actions = torch.zeros(n, HORIZON, dtype=torch.long)
    rewards, mask = torch.zeros(n, HORIZON), torch.zeros(n, HORIZON, dtype=torch.bool)
    terminated = torch.zeros(n, HORIZON, dtype=torch.bool)
    for i, (states, taken) in enumerate(paths):
        k = len(states)
        obs[i, :k], actions[i, :k] = eye[states], torch.tensor(taken)
        rewards[i, :k] = REWARDS[states, taken]
        mask[i, :k], terminated[i, k - 1] = True, True
    return agent, obs, actions, rewards, mask, terminated


def probs_and_exact(agent, obs, actions, rewards, mask):
    """Trajectory probabilities and the exact gradient of J by autograd through the sum."""
    params = list(policy_params(agent).keys())
    named = dict(agent.named_parameters())
    logp = agent._logprob(agent.policy_out(obs), actions)
    logp_traj = torch.where(mask, logp, torch.zeros_like(logp)).sum(1)
    disc = GAMMA ** torch.arange(HORIZON, dtype=torch.float32)
    ret = (rewards * disc).sum(1)
    objective = (logp_traj.exp() * ret).sum()
    grads = torch.autograd.grad(objective, [named[k[len("agent.") :]] for k in params])
    return logp_traj.exp().detach(), torch.cat([g.flatten() for g in grads])


def exact_values(agent, obs, rewards, mask, prob):
    """V(s_t) at every node: expected discounted reward-to-go given the path so far."""
    with torch.no_grad():
        disc = GAMMA ** torch.arange(HORIZON, dtype=torch.float32)
        values = torch.zeros_like(rewards)
        for i in range(obs.shape[0]):
            for t in range(int(mask[i].sum())):
                # the paths sharing this one's first t actions (same node at step t)
                same = (obs[:, : t + 1] == obs[i, : t + 1]).flatten(1).all(1) & mask[:, t]
                pw = prob[same] / prob[same].sum()
                rtg = (rewards[same, t:] * disc[: HORIZON - t]).sum(1)
                values[i, t] = (pw * rtg).sum()
    return values


def gradients(mdp, values):
    agent, obs, actions, rewards, mask, terminated = mdp
    weights = estimator_weights(
        rewards, mask, terminated, values, gamma=GAMMA, constant_baseline=2.0
    )
    return episode_gradients(agent, obs, actions, mask, weights)


def test_every_estimator_is_unbiased_with_the_true_value_function(mdp):
    agent, obs, actions, rewards, mask, _ = mdp
    prob, exact = probs_and_exact(agent, obs, actions, rewards, mask)
    assert prob.sum().item() == pytest.approx(1.0, abs=1e-6)
    values = exact_values(agent, obs, rewards, mask, prob)
    grads = gradients(mdp, values)
    assert set(grads) == set(estimator_names())
    for name, g in grads.items():
        mean = (prob[:, None] * g).sum(0)
        assert torch.allclose(mean, exact, atol=1e-5), name


def test_with_a_wrong_critic_only_the_bootstrapped_estimators_are_biased(mdp):
    agent, obs, actions, rewards, mask, _ = mdp
    prob, exact = probs_and_exact(agent, obs, actions, rewards, mask)
    wrong = torch.where(mask, torch.full_like(rewards, 5.0), torch.zeros_like(rewards))
    grads = gradients(mdp, wrong)
    bias = {k: ((prob[:, None] * g).sum(0) - exact).norm().item() for k, g in grads.items()}
    for name in ("total", "reward_to_go", "rtg_minus_constant", "rtg_minus_value", "gae_1"):
        assert bias[name] < 1e-5, (name, bias[name])
    assert bias["gae_0"] > 100 * 1e-5 and bias["gae_0"] > bias["gae_0.5"] > bias["gae_0.9"]


def test_variances_are_ordered_as_theory_says(mdp):
    agent, obs, actions, rewards, mask, _ = mdp
    prob, _ = probs_and_exact(agent, obs, actions, rewards, mask)
    grads = gradients(mdp, exact_values(agent, obs, rewards, mask, prob))
    var = {}
    for name, g in grads.items():
        mean = (prob[:, None] * g).sum(0)
        var[name] = (prob * ((g - mean) ** 2).sum(1)).sum().item()
    # causality, then a state baseline, then bootstrapping from the true V
    assert var["total"] > var["reward_to_go"] > var["rtg_minus_value"]
    assert var["reward_to_go"] > var["rtg_minus_constant"]
    assert var["gae_1"] > var["gae_0.5"] > var["gae_0"]


def test_sampled_means_agree_within_a_confidence_bound(mdp):
    """Monte-Carlo batches: total return and reward-to-go estimate the same gradient."""
    agent, obs, actions, rewards, mask, _ = mdp
    prob, exact = probs_and_exact(agent, obs, actions, rewards, mask)
    grads = gradients(mdp, torch.zeros_like(rewards))
    gen = torch.Generator().manual_seed(1)
    idx = torch.multinomial(prob, 4000, replacement=True, generator=gen)
    for name in ("total", "reward_to_go"):
        sample = grads[name][idx]
        se = sample.std(0) / sample.shape[0] ** 0.5
        # 5 standard errors per coordinate: a false alarm has probability ~1e-6 each
        assert bool(((sample.mean(0) - exact).abs() <= 5 * se + 1e-6).all()), name
