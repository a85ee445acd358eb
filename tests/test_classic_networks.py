"""ActorCritic's (in, out)-layout MLPs compute what nn.Linear stacks compute; models and
checkpoints saved in the nn.Linear layout still load and resume."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from classic_control import rundir
from classic_control.algos.base import actor_critic_params
from classic_control.envs import probe_env
from classic_control.networks import ActorCritic
from classic_control.settings import resolve
from classic_control.trainer import Trainer


def _linear_reference(agent: ActorCritic, activation: str) -> nn.ModuleDict:
    """The network as it was written before: nn.Sequential(nn.Linear, act, ...) bodies and
    nn.Linear heads under the same names, holding ``agent``'s weights ((out, in) layout)."""
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    parts = nn.ModuleDict()
    for name in ("actor_body", "critic_body", "policy_head", "value_head"):
        mlp = getattr(agent, name)
        if mlp is None:
            continue
        linears = []
        for layer in mlp.layers:
            lin = nn.Linear(*layer.weight.shape)
            with torch.no_grad():
                lin.weight.copy_(layer.weight.t())
                lin.bias.copy_(layer.bias)
            linears.append(lin)
        if name.endswith("_body"):
            parts[name] = nn.Sequential(*[m for lin in linears for m in (lin, act())])
        else:
            parts[name] = linears[0]
    return parts


def _old_state_dict(agent: ActorCritic, activation: str) -> dict[str, torch.Tensor]:
    """``agent``'s weights under the nn.Linear layout's names and shapes."""
    state = {
        k: v.detach().clone() for k, v in _linear_reference(agent, activation).state_dict().items()
    }
    if not agent.discrete:
        state["log_std"] = agent.log_std.detach().clone()
    return state


@pytest.mark.parametrize(
    ("env_id", "shared", "activation"),
    [
        ("CartPole-v1", False, "tanh"),
        ("CartPole-v1", True, "relu"),
        ("Pendulum-v1", False, "relu"),
        ("Pendulum-v1", True, "tanh"),
    ],
)
def test_actor_critic_computes_what_linear_stacks_compute(env_id, shared, activation):
    cfg = resolve(
        "ppo",
        env_id,
        {"shared_network": shared, "activation": activation, "hidden_sizes": [32, 16, 8]},
    )[0]
    spec = probe_env(env_id)
    torch.manual_seed(3)
    agent = ActorCritic(spec, cfg)
    with torch.no_grad():  # off the init (zero biases, tiny head) so every term counts
        for p in agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ref = _linear_reference(agent, activation)
    critic_body = ref["critic_body"] if "critic_body" in ref else ref["actor_body"]

    obs = torch.randn(37, spec.obs_dim)
    logits_or_mean = ref["policy_head"](ref["actor_body"](obs))
    values = ref["value_head"](critic_body(obs)).squeeze(-1)
    torch.testing.assert_close(agent.policy_out(obs), logits_or_mean)
    torch.testing.assert_close(agent.value(obs), values)
    # any leading shape, as nn.Linear takes: (T, B, obs) and a single observation
    torch.testing.assert_close(
        agent.value(obs.view(37, 1, -1)),
        ref["value_head"](critic_body(obs.view(37, 1, -1))).squeeze(-1),
    )
    torch.testing.assert_close(agent.policy_out(obs[0]), logits_or_mean[0])

    # the same gradients, transposed for the weights
    actions = agent.mode(obs).detach()
    logp, _, v = agent.evaluate(obs, actions)
    (logp.sum() + v.square().sum()).backward()
    if spec.discrete:
        ref_logp = torch.log_softmax(logits_or_mean, -1).gather(-1, actions[:, None]).squeeze(-1)
    else:
        z = (actions - logits_or_mean) * torch.exp(-agent.log_std.detach())
        ref_logp = (-0.5 * z.pow(2) - agent.log_std.detach() - 0.5 * math.log(2 * math.pi)).sum(-1)
    (ref_logp.sum() + values.square().sum()).backward()
    for name, mlp in agent.named_children():
        for i, layer in enumerate(mlp.layers):
            lin = ref[name][2 * i] if name.endswith("_body") else ref[name]
            torch.testing.assert_close(layer.weight.grad, lin.weight.grad.t())
            torch.testing.assert_close(layer.bias.grad, lin.bias.grad)


def test_initial_weights_are_the_orthogonal_init_of_nn_linear():
    cfg = resolve("ppo", "CartPole-v1", {})[0]
    spec = probe_env("CartPole-v1")
    torch.manual_seed(11)
    agent = ActorCritic(spec, cfg)
    torch.manual_seed(11)  # the same draws, in the order the layers are built
    expected = []
    for n_in, n_out, gain in [
        (4, 64, math.sqrt(2)), (64, 64, math.sqrt(2)),  # actor body
        (4, 64, math.sqrt(2)), (64, 64, math.sqrt(2)),  # critic body
        (64, 2, 0.01), (64, 1, 1.0),  # policy head, value head
    ]:  # fmt: skip
        lin = nn.Linear(n_in, n_out)
        nn.init.orthogonal_(lin.weight, gain)
        expected.append(lin.weight.detach())
    layers = [layer for mlp in agent.children() for layer in mlp.layers]
    assert len(layers) == len(expected)
    for layer, w in zip(layers, expected):
        assert torch.equal(layer.weight, w.t())
        assert not layer.bias.any()


def _train(cfg, run_dir, **kw):
    trainer = Trainer(cfg, run_dir)
    try:
        return trainer.train(show_progress=False, **kw)
    finally:
        trainer.close()


def test_linear_layout_model_and_checkpoint_still_load_and_resume(tmp_path):
    small = {"num_envs": 2, "num_steps": 32, "num_minibatches": 2, "update_epochs": 2}
    values = {"seed": 0, "total_steps": 640, "eval_every": 320, "checkpoint_every": 256, **small}
    cfg = resolve("ppo", "Pendulum-v1", {**values, "norm_obs": True})[0]
    cut = tmp_path / "cut"
    assert _train(cfg, cut, stop_after=5) is None  # a checkpoint at 256 steps, Adam moments set

    # the same run folder as the nn.Linear layout wrote it: weights (out, in) under the old
    # names, Adam's moments of the weights with the weights' shapes, and the actor's and
    # the critic's parameters in two optimiser groups of the same learning rate
    old = tmp_path / "old"
    shutil.copytree(cut, old)
    state = rundir.load_checkpoint(old)
    agent = ActorCritic(probe_env(cfg.env_id), cfg)
    agent.load_state_dict(state["agent"])
    state["agent"] = _old_state_dict(agent, cfg.activation)
    optimizer = state["algo"]["optimizer"]
    moments = optimizer["state"]
    assert any(t.ndim == 2 for m in moments.values() for t in m.values())
    for m in moments.values():
        m.update({k: t.t().contiguous() for k, t in m.items() if t.ndim == 2})
    (group,) = optimizer["param_groups"]
    n_actor = len(actor_critic_params(agent)[0])
    optimizer["param_groups"] = [
        {**group, "params": group["params"][:n_actor]},
        {**group, "params": group["params"][n_actor:]},
    ]
    rundir.save_checkpoint(old, state)

    finished = {d: _train(cfg, d, resume=True) for d in (cut, old)}
    assert finished[old]["returns"] == finished[cut]["returns"]
    new_model = load_file(cut / rundir.MODEL_FINAL)
    assert new_model.keys() == load_file(old / rundir.MODEL_FINAL).keys()
    for k, v in load_file(old / rundir.MODEL_FINAL).items():
        assert torch.equal(v, new_model[k]), k

    # a model file of the old layout loads into today's network, the same function
    agent = ActorCritic(probe_env(cfg.env_id), cfg)
    rundir.load_model(cut / rundir.MODEL_FINAL, agent)
    tensors = {f"agent.{k}": v for k, v in _old_state_dict(agent, cfg.activation).items()}
    tensors.update({k: v for k, v in new_model.items() if not k.startswith("agent.")})
    save_file(tensors, tmp_path / "old_model.safetensors")
    assert any(k.endswith("policy_head.weight") for k in tensors)
    loaded = ActorCritic(probe_env(cfg.env_id), cfg)
    rundir.load_model(tmp_path / "old_model.safetensors", loaded)
    obs = torch.randn(5, 3)
    torch.testing.assert_close(loaded.policy_out(obs), agent.policy_out(obs), rtol=0, atol=0)
    torch.testing.assert_close(loaded.value(obs), agent.value(obs), rtol=0, atol=0)


def test_a_model_of_another_network_is_still_one_error_line(tmp_path):
    cfg = resolve("ppo", "CartPole-v1", {})[0]
    spec = probe_env("CartPole-v1")
    agent = ActorCritic(spec, cfg)
    tensors = {f"agent.{k}": v for k, v in _old_state_dict(agent, cfg.activation).items()}
    tensors["agent.actor_body.2.weight"] = torch.zeros(64, 32)  # an old model of other widths
    tensors.update(
        {
            "obs_rms.mean": torch.zeros(4, dtype=torch.float64),
            "obs_rms.var": torch.ones(4, dtype=torch.float64),
        }
    )
    save_file(tensors, tmp_path / "m.safetensors")
    with pytest.raises(
        rundir.ConfigError, match=r"actor_body\.layers\.1\.weight has shape \(32, 64\)"
    ):
        rundir.load_model(tmp_path / "m.safetensors", agent)
