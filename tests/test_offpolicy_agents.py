"""DDPG, TD3 and SAC agents: replay semantics, exact resume, checks, eval and video."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from classic_control.__main__ import main
from classic_control.algos import REGISTRY
from classic_control.compare.baselines_sb3 import ZOO
from classic_control.config import ConfigError
from classic_control.envs import probe_env
from classic_control.metrics import is_timing
from classic_control.settings import resolve
from classic_control.trainer import Trainer
from rlhf_pg import gsde_log_std

TINY = {
    "total_steps": 600,
    "num_steps": 100,
    "learning_starts": 150,
    "batch_size": 32,
    "hidden_sizes": [32, 32],
    "train_freq": 2,
    "gradient_steps": 2,
    "eval_every": 300,
    "eval_episodes": 2,
    "checkpoint_every": 200,
    "buffer_size": 10_000,
}


def _cfg(algo: str, env_id: str = "Pendulum-v1", **kw):
    return resolve(algo, env_id, {**TINY, **kw})[0]


def _run(cfg, run_dir, *, resume=False, stop_after=None):
    trainer = Trainer(cfg, run_dir)
    try:
        return trainer.train(resume=resume, show_progress=False, stop_after=stop_after)
    finally:
        trainer.close()


def _collector(algo: str, env_id: str, **kw):
    cfg = _cfg(algo, env_id, learning_starts=10**6, **kw)  # random actions, no learning
    trainer = Trainer(cfg, "unused")
    return trainer, trainer.collector


def test_truncation_stores_true_final_obs_and_is_not_terminal():
    trainer, col = _collector("sac", "Pendulum-v1", num_envs=2, num_steps=205)
    col.collect()  # Pendulum is cut at 200 steps; 5 more steps start the next episodes
    d, last = col.buffer.data, 199 * 2  # transitions are stored env-interleaved
    assert not d.terminated[: col.buffer.size].any()
    for i in range(2):
        # replay env i's actions in a fresh env from the same reset seed: its 200th obs
        env = gym.make("Pendulum-v1")
        obs, _ = env.reset(seed=0 + i)
        assert np.allclose(d.obs[i].numpy(), obs, atol=1e-6)
        for t in range(200):
            a = trainer.agent.to_env(d.actions[2 * t + i]).numpy()
            obs, *_ = env.step(a)
        assert np.allclose(d.next_obs[last + i].numpy(), obs, atol=1e-5)
        # the next stored transition starts from the reset observation, not the final one
        assert not np.allclose(d.obs[last + 2 + i].numpy(), obs)
    trainer.close()


def test_termination_flag_matches_the_env():
    """LunarLanderContinuous under random actions crashes: terminated, not truncated."""
    trainer, col = _collector("td3", "LunarLanderContinuous-v3", num_envs=1, num_steps=400)
    col.collect()
    term = col.buffer.data.terminated[: col.buffer.size]
    ends = [n for _, n in col.stats.pop()]
    assert len(ends) >= 1 and term.sum() == len(ends)
    assert torch.equal(torch.nonzero(term).squeeze(-1), torch.tensor(np.cumsum(ends) - 1))
    trainer.close()


def test_actions_rescale_to_bounds():
    spec = probe_env("MountainCarContinuous-v0")
    cfg = _cfg("ddpg", "MountainCarContinuous-v0")
    agent = REGISTRY["ddpg"].build_agent(spec, cfg)
    out = agent.to_env(torch.tensor([[-1.0], [0.0], [1.0]]))
    assert torch.allclose(out, torch.tensor([[-1.0], [0.0], [1.0]]))
    spec = probe_env("Pendulum-v1")
    agent = REGISTRY["sac"].build_agent(spec, _cfg("sac"))
    out = agent.to_env(torch.tensor([[-1.0], [0.5]]))
    assert torch.allclose(out, torch.tensor([[-2.0], [1.0]]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algo", "extra"),
    [
        ("ddpg", {"exploration_noise": "ou"}),
        ("td3", {}),
        ("sac", {"num_envs": 2, "num_steps": 50}),
        # gSDE: the checkpoint (200 env steps = 25 exploring steps per env) falls while a
        # matrix is held (period 7), so resuming must restore it
        (
            "sac",
            {
                "num_envs": 2,
                "num_steps": 50,
                "use_sde": True,
                "sde_sample_freq": 7,
                "init_log_std": -1.0,
            },
        ),
    ],
)
def test_resume_equals_uninterrupted(tmp_path, algo, extra):
    cfg = _cfg(algo, **extra)
    full = _run(cfg, tmp_path / "full")
    assert _run(cfg, tmp_path / "cut", stop_after=3) is None  # checkpoint at 200, cut at 300
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    buf = ckpt["collector"]["buffer"]
    assert buf["size"] == 200 and buf["rows"].shape == (200, 9)  # only the filled part is saved
    resumed = _run(cfg, tmp_path / "cut", resume=True)

    def rows(d):
        lines = (d / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if not is_timing(k)} for x in lines]

    assert rows(tmp_path / "cut") == rows(tmp_path / "full")
    assert any("loss/critic" in r for r in rows(tmp_path / "full"))
    assert resumed["returns"] == full["returns"]
    wa = load_file(tmp_path / "cut" / "model_final.safetensors")
    wb = load_file(tmp_path / "full" / "model_final.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_discrete_env_is_one_line_naming_fitting_algorithms(capsys, tmp_path):
    code = main(["train", "--algo", "sac", "--env", "CartPole-v1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    assert "sac needs continuous (Box) actions" in err and "ppo, a2c, reinforce, trpo" in err
    assert not (tmp_path / "r").exists()


def test_the_error_names_every_algorithm_that_takes_discrete_actions():
    from classic_control.algos.offpolicy import DISCRETE_FIT, OffPolicy

    on_policy = [name for name, cls in REGISTRY.items() if not issubclass(cls, OffPolicy)]
    assert sorted(DISCRETE_FIT) == sorted(on_policy)


@pytest.mark.parametrize(
    ("algo", "kw", "message"),
    [
        ("td3", {"policy_delay": 0}, "policy_delay must be >= 1"),
        ("sac", {"init_alpha": 0.0}, "init_alpha must be > 0"),
        ("ddpg", {"exploration_noise": "pink"}, "unknown exploration_noise 'pink'"),
        ("sac", {"norm_obs": True}, "sac does not support norm_obs"),
        ("td3", {"tau": 1.5}, r"tau must be in \[0, 1\]"),
        ("sac", {"batch_size": 0}, "batch_size must be >= 1"),
        ("ddpg", {"critic_learning_rate": -1.0}, "critic_learning_rate must be > 0"),
        ("td3", {"use_sde": True}, "use_sde .* is implemented for sac only, not td3"),
        ("sac", {"use_sde": True, "sde_sample_freq": 0}, "sde_sample_freq must be >= 1 .* got 0"),
        ("td3", {"gradient_steps": 0}, r"gradient_steps must be >= 1 or -1 .* got 0"),
        ("sac", {"train_freq_unit": "episodes"}, "unknown train_freq_unit 'episodes'; valid: step"),
        (
            "sac",
            {"use_sde": True, "train_freq_unit": "episode"},
            "train_freq_unit 'episode' does not give; set sde_sample_freq >= 1",
        ),
    ],
)
def test_bad_settings_rejected(algo, kw, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(algo, **kw)


@pytest.mark.slow
def test_eval_and_video_from_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--algo", "td3", "--env", "Pendulum-v1", "--out", str(run), "--no-progress"]
    flags = {k: v for k, v in TINY.items() if k not in ("hidden_sizes", "total_steps")}
    argv += ["--steps", str(TINY["total_steps"])]
    argv += [f"--{k.replace('_', '-')}={v}" for k, v in flags.items()] + ["--hidden-sizes", "32"]
    assert main(argv) == 0
    video = tmp_path / "ep.gif"
    assert main(["eval", str(run), "--episodes", "2", "--video", str(video)]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["algo"] == "td3" and result["episodes"] == 2 and video.stat().st_size > 0
    assert "mean return" in capsys.readouterr().out


def test_off_policy_defaults_apply_without_a_preset_only_to_off_policy():
    sac, preset = resolve("sac", "MountainCarContinuous-v0", {"learning_starts": 5})
    assert preset == "sac_MountainCarContinuous-v0.yaml" and sac.hidden_sizes == [64, 64]
    td3, preset = resolve("td3", "MountainCarContinuous-v0", {})  # no td3 preset for it
    assert preset is None and (td3.num_envs, td3.hidden_sizes, td3.anneal_lr) == (
        1,
        [256, 256],
        False,
    )
    ppo, _ = resolve("ppo", "MountainCarContinuous-v0", {})
    assert (ppo.num_envs, ppo.hidden_sizes) == (8, [64, 64])


def _gsde_sac(**kw):
    from classic_control.algos.sac import SAC

    cfg = _cfg("sac", use_sde=True, **kw)
    return SAC(cfg, REGISTRY["sac"].build_agent(probe_env("Pendulum-v1"), cfg))


@pytest.mark.parametrize(("sample_freq", "period"), [(3, 3), (-1, 2)])  # -1: train_freq (2)
def test_gsde_holds_one_matrix_per_env_for_its_period(sample_freq, period):
    torch.manual_seed(0)
    sac = _gsde_sac(num_envs=2, sde_sample_freq=sample_freq, init_log_std=-1.0)
    obs = torch.tensor([[0.3, -0.2, 0.5]]).expand(2, 3)  # the same state in both envs
    actions = [sac.explore(obs) for _ in range(3 * period)]
    for t in range(1, 3 * period):
        held = torch.equal(actions[t], actions[t - 1])
        assert held == (t % period != 0), t  # a fresh matrix exactly every `period` steps
    assert not torch.equal(actions[0][0], actions[0][1])  # each env its own matrix


def test_gsde_exploration_spread_is_the_gaussian_the_log_prob_uses():
    """Over fresh exploration matrices, the pre-tanh exploration noise at one state has the
    std that sample() draws from and scores with (Monte-Carlo, 20k matrices)."""
    torch.manual_seed(0)
    actor = _gsde_sac(init_log_std=-1.5).agent.actor
    n, obs = 20_000, torch.tensor([[0.3, -0.2, 0.5]])
    with torch.no_grad():
        mean_u = torch.atanh(actor(obs))
        features = actor.trunk(obs)
        std = torch.exp(gsde_log_std(features, actor.log_std))[0]
        u_explore = torch.atanh(
            actor.explore(obs.expand(n, 3), actor.sample_exploration_matrices(n))
        )
        u_sample = torch.atanh(actor.sample(obs.expand(n, 3))[0])
    for u in (u_explore, u_sample):
        torch.testing.assert_close(u.std(0), std, rtol=0.03, atol=0.0)
        torch.testing.assert_close(u.mean(0), mean_u[0], rtol=0.0, atol=4 * float(std) / n**0.5)


def test_sb3_baseline_runs_the_same_gsde_settings_as_the_preset():
    """The zoo table the SB3 baseline path builds its model from (``ZOO``: SB3's own names)
    against our resolved preset, without importing SB3 (a `bench` extra, not installed by
    `make test`); ``sde_sample_freq`` is absent there, i.e. SB3's default -1."""
    from classic_control.compare.baselines_sb3 import ZOO

    ours, _ = resolve("sac", "MountainCarContinuous-v0", {})
    zoo = ZOO[("sac", "MountainCarContinuous-v0")]
    assert zoo["use_sde"] and ours.use_sde
    assert "sde_sample_freq" not in zoo and ours.sde_sample_freq == -1
    assert zoo["log_std_init"] == ours.init_log_std
    assert zoo["net_arch"] == list(ours.hidden_sizes)
    assert zoo["ent_coef"] == pytest.approx(ours.init_alpha) and not ours.learn_alpha
    same_name = ["learning_rate", "buffer_size", "batch_size", "train_freq", "gradient_steps"]
    same_name += ["gamma", "tau", "learning_starts"]
    assert {k: zoo[k] for k in same_name} == {k: getattr(ours, k) for k in same_name}


def _zoo_in_our_names(zoo: dict) -> dict:
    """SB3/zoo hyperparameter names and encodings -> our Config fields, written out by hand."""
    ours = {}
    for key, value in zoo.items():
        if key == "train_freq":
            n, unit = value if isinstance(value, tuple) else (value, "step")
            ours["train_freq"], ours["train_freq_unit"] = n, unit
        elif key == "learning_rate" and isinstance(value, str):  # "lin_x": linear decay from x
            ours["learning_rate"], ours["anneal_lr"] = float(value.removeprefix("lin_")), True
        elif key == "ent_coef":  # a fixed temperature
            ours["init_alpha"], ours["learn_alpha"] = value, False
        else:
            name = {
                "net_arch": "hidden_sizes",
                "noise_type": "exploration_noise",
                "noise_std": "exploration_noise_std",
                "log_std_init": "init_log_std",
            }.get(key, key)
            ours[name] = value
    return ours


# where a preset departs from the zoo on purpose, and what it has instead
PRESET_DEPARTURES = {
    # Pendulum's episodes are all 200 steps: a phase every 200 steps is the zoo's schedule
    ("td3", "Pendulum-v1"): {"train_freq": 200, "train_freq_unit": "step", "gradient_steps": 200},
    ("ddpg", "Pendulum-v1"): {"train_freq": 200, "train_freq_unit": "step", "gradient_steps": 200},
    # measured with this schedule (docs/benchmarks.md); the same one update per env step
    ("td3", "LunarLanderContinuous-v3"): {
        "train_freq": 64,
        "train_freq_unit": "step",
        "gradient_steps": 64,
    },
}


@pytest.mark.parametrize(
    ("algo", "env_id"), [key for key in ZOO if key[0] in ("ddpg", "td3", "sac")]
)
def test_off_policy_presets_are_the_zoo_settings_the_sb3_baseline_gets(algo, env_id):
    """Each off-policy preset against the zoo table the SB3 baseline path builds its model from
    (SB3 not imported: a `bench` extra); a departure must be the declared one."""
    ours, _ = resolve(algo, env_id, {})
    zoo = _zoo_in_our_names(ZOO[(algo, env_id)])
    zoo.update(PRESET_DEPARTURES.get((algo, env_id), {}))
    got = {k: getattr(ours, k) for k in zoo}
    if "hidden_sizes" in got:
        got["hidden_sizes"] = list(got["hidden_sizes"])
    assert got == zoo


def test_sb3_baseline_runs_the_lunarlander_ppo_preset_settings():
    """SB3's PPO on LunarLander-v3 gets the settings of our preset, in SB3's names (the
    minibatch is given as a size there, as a count here)."""
    from classic_control.compare.baselines_sb3 import ZOO

    ours, _ = resolve("ppo", "LunarLander-v3", {})
    zoo = ZOO[("ppo", "LunarLander-v3")]
    assert (zoo["n_envs"], zoo["n_steps"]) == (ours.num_envs, ours.num_steps)
    assert zoo["batch_size"] == ours.num_envs * ours.num_steps // ours.num_minibatches
    assert (zoo["n_epochs"], zoo["gamma"], zoo["gae_lambda"], zoo["ent_coef"]) == (
        ours.update_epochs,
        ours.gamma,
        ours.gae_lambda,
        ours.entropy_coef,
    )
    # SB3's defaults for the rest: lr 3e-4 constant, clip 0.2 constant, no value clipping,
    # value loss 0.5 * MSE (ours is vf_coef * 1/2 * MSE, so vf_coef 1.0)
    assert (ours.learning_rate, ours.anneal_lr, ours.clip_eps) == (3e-4, False, 0.2)
    assert not ours.anneal_clip
    assert "clip_range_vf" not in zoo and not ours.clip_vloss
    assert "vf_coef" not in zoo and ours.vf_coef == 1.0


def _subnormal_survives() -> bool:
    """A quarter of the smallest normal float32 is subnormal; flushed, it is 0."""
    tiny = torch.full((1,), torch.finfo(torch.float32).tiny)
    return bool((tiny * 0.25).item() > 0.0)


@pytest.mark.parametrize("flush", [True, False])
def test_trainer_flushes_subnormals_while_it_lives_and_restores_the_caller_setting(flush):
    torch.set_flush_denormal(False)
    try:
        trainer = Trainer(_cfg("sac", flush_denormal=flush), "unused")
        assert _subnormal_survives() is not flush
        # why it matters: Adam's second moment of a tiny gradient is subnormal (1e-38 times
        # 1 - beta2 = 1e-41); flushed, the optimizer state holds zeros instead
        p = torch.nn.Parameter(torch.zeros(4))
        p.grad = torch.full((4,), 1e-19)
        opt = torch.optim.Adam([p], lr=1e-3)
        opt.step()
        assert bool((opt.state[p]["exp_avg_sq"] > 0).all()) is not flush
        trainer.close()
        assert _subnormal_survives()  # the caller's setting is back
    finally:
        torch.set_flush_denormal(False)


def test_q_ensemble_first_critics_match_separate_linear_critics():
    """QEnsemble against two plain nn.Linear critics holding the same weights, whole and with
    ``first=1`` (TD3's actor loss): same values and same gradient to the action."""
    from classic_control.offpolicy_networks import QEnsemble

    torch.manual_seed(0)
    ens = QEnsemble(3, 2, [16, 8], "relu", n=2)
    critics = []
    for k in range(2):
        layers = []
        for w, b in zip(ens.weights, ens.biases):
            lin = torch.nn.Linear(*w.shape[1:])
            lin.weight.data, lin.bias.data = w[k].detach().T.clone(), b[k, 0].detach().clone()
            layers += [lin, torch.nn.ReLU()]
        critics.append(torch.nn.Sequential(*layers[:-1]))
    obs, act = torch.randn(5, 3), torch.randn(5, 2, requires_grad=True)
    ref = [c(torch.cat([obs, act], -1)).squeeze(-1) for c in critics]
    (g_ref,) = torch.autograd.grad(ref[0].sum(), act)
    both = ens(obs, act)
    assert both.shape == (2, 5)
    torch.testing.assert_close(both, torch.stack(ref))
    q1 = ens(obs, act, first=1)
    assert q1.shape == (1, 5)
    torch.testing.assert_close(q1[0], ref[0])
    (g,) = torch.autograd.grad(q1[0].sum(), act)
    torch.testing.assert_close(g, g_ref)
