"""classic_control as a new user tries it: --env-kwargs, --max-episode-steps, module:EnvId
envs (train, eval and --resume from the plain CLI), help on every flag, where each setting
came from, and TensorBoard logging."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest
import yaml

from classic_control.__main__ import build_parser, main
from classic_control.config import Config

ROOT = Path(__file__).resolve().parents[1]
# tiny budgets: one or two PPO updates of CartPole
TINY = ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1"]
TINY += ["--eval-episodes", "2", "--no-progress"]

# A user's own env, in a module of its own that registers it on import. Its observation
# size and episode length come from constructor arguments, so the test can tell whether
# env_kwargs reached the env (the network's input width) and which time limit applied.
USER_ENV = textwrap.dedent(
    """
    import gymnasium as gym
    import numpy as np

    class Corridor(gym.Env):
        '''Walk right (action 1) to the end of a corridor of `length` cells; reward 1 per
        step to the right. Observation: position one-hot-ish padded to `width`.'''

        def __init__(self, length=5, width=3):
            self.length, self.width = length, width
            self.observation_space = gym.spaces.Box(0.0, 1.0, (width,), np.float32)
            self.action_space = gym.spaces.Discrete(2)

        def _obs(self):
            obs = np.zeros(self.width, np.float32)
            obs[0] = self.pos / self.length
            return obs

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.pos = 0
            return self._obs(), {}

        def step(self, action):
            self.pos += int(action)
            return self._obs(), float(action), self.pos >= self.length, False, {}

    gym.register("Corridor-v0", entry_point=Corridor, max_episode_steps=50)
    """
)


@pytest.fixture
def user_env(tmp_path, monkeypatch):
    """A module ``my_corridor`` on sys.path (and PYTHONPATH, for worker processes), not imported."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / "my_corridor.py").write_text(USER_ENV)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", f"{folder}:{ROOT}")
    _forget_user_env()
    yield "my_corridor:Corridor-v0"
    _forget_user_env()


def _error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# --- --max-episode-steps and --env-kwargs -------------------------------------------------------
def test_max_episode_steps_limits_training_and_evaluation_episodes(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--steps", "256", "--max-episode-steps", "12", "--out", str(run), *TINY]
    assert main(argv) == 0
    assert "flags: total_steps=256, max_episode_steps=12" in capsys.readouterr().out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lengths = [r["train/episode_length"] for r in rows if "train/episode_length" in r]
    # an untrained CartPole policy keeps the pole up for ~10-40 steps: the cap must bind
    assert lengths and max(lengths) <= 12
    assert json.loads((run / "eval.json").read_text())["mean_length"] <= 12
    assert yaml.safe_load((run / "config.yaml").read_text())["max_episode_steps"] == 12


@pytest.mark.parametrize(
    "given",
    [["length=3", "width=6"], ['{"length": 3, "width": 6}']],
    ids=["key=value", "json"],
)
def test_env_kwargs_reach_the_env_and_the_saved_config(tmp_path, user_env, given):
    run = tmp_path / "run"
    argv = ["train", "--env", user_env, "--env-kwargs", *given, "--steps", "64", "--out", str(run)]
    assert main([*argv, *TINY]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["env_kwargs"] == {"length": 3, "width": 6}
    assert saved["env_id"] == user_env
    # width=6 is the network's input size; length=3 the deterministic policy's best episode
    from safetensors.torch import load_file

    weights = load_file(run / "model_final.safetensors")
    assert weights["obs_rms.mean"].shape == (6,)


def test_env_kwargs_values_are_json_else_strings():
    from classic_control.flags import env_kwargs_item

    assert env_kwargs_item("g=9.81") == {"g": 9.81}
    assert env_kwargs_item("continuous=true") == {"continuous": True}
    assert env_kwargs_item("sizes=[1, 2]") == {"sizes": [1, 2]}
    assert env_kwargs_item("mode=rgb") == {"mode": "rgb"}
    assert env_kwargs_item("x=") == {"x": ""}
    assert env_kwargs_item('{"a": null}') == {"a": None}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--env-kwargs", "foo=1"], "unexpected keyword argument 'foo'"),
        (["--env-kwargs", "foo"], "expected key=value pairs or one JSON object, got 'foo'"),
        (["--env-kwargs", '{"g": 9.8'], "is not a JSON object (Expecting"),
        (["--env-kwargs", "a=1", "a=2"], "'a' is given twice"),
        (["--env-kwargs", "max_episode_steps=3"], "may not set 'max_episode_steps'"),
        (["--env-kwargs", "render_mode=human"], "may not set 'render_mode'"),
        (["--env", "Pendulum-v1", "--env-kwargs", "g=abc"], "fails on its first step"),
        (["--max-episode-steps", "0"], "max_episode_steps must be >= 1"),
        (["--report-to", "wandb"], "unknown report_to 'wandb'; valid: tensorboard"),
    ],
)
def test_bad_env_options_are_one_line_before_any_run(capsys, tmp_path, flags, message):
    err = _error(capsys, ["train", "--out", str(tmp_path / "r"), *flags])
    assert message in err
    assert not (tmp_path / "r").exists()


def test_unknown_env_kwarg_lists_the_ones_the_env_takes(capsys, tmp_path):
    err = _error(capsys, ["train", "--env-kwargs", "gravity=1", "--out", str(tmp_path / "r")])
    assert "'gravity'" in err and "CartPole-v1 accepts: sutton_barto_reward" in err


# --- module:EnvId ---------------------------------------------------------------------------------
def test_plain_id_of_an_unimported_user_env_hints_at_the_module_form(capsys, user_env):
    err = _error(capsys, ["train", "--env", "Corridor-v0"])
    assert "unknown env id 'Corridor-v0'" in err and "module:Corridor-v0" in err


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("no_such_module_xyz:Corridor-v0", "cannot import module 'no_such_module_xyz'"),
        ("json:Corridor-v0", "importing 'json' did not register it"),
    ],
)
def test_bad_module_env_ids(capsys, tmp_path, env_id, message):
    err = _error(capsys, ["train", "--env", env_id, "--out", str(tmp_path / "r")])
    assert message in err


def _forget_user_env() -> None:
    """What a fresh interpreter knows of the user env: nothing until it imports the module."""
    sys.modules.pop("my_corridor", None)
    gym.registry.pop("Corridor-v0", None)


def test_user_env_run_evaluates_and_resumes_from_the_plain_cli(tmp_path, user_env, capsys):
    """Train on my_corridor:Corridor-v0 with env_kwargs and a time limit, interrupted after
    the first checkpoint; then, as a fresh interpreter would (the module not imported, its
    env not registered), --resume finishes it and eval scores it, both rebuilt from
    config.yaml alone."""
    run = tmp_path / "run"
    argv = ["train", "--env", user_env, "--env-kwargs", "length=400", "width=2"]
    argv += ["--max-episode-steps", "7", "--steps", "192", "--checkpoint-every", "64"]
    argv += ["--out", str(run), *TINY]
    from classic_control.settings import resolve
    from classic_control.trainer import Trainer

    # the first session: the CLI's own parse, stopped after two updates (one checkpoint)
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in Config.__dataclass_fields__}
    overrides = {k: v for k, v in overrides.items() if v is not None and k != "env_id"}
    cfg, _ = resolve("ppo", user_env, overrides)
    trainer = Trainer(cfg, run)
    trainer.train(stop_after=2, show_progress=False)
    trainer.close()
    assert not (run / "eval.json").exists()

    _forget_user_env()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert f"resuming {run} at {user_env}" in capsys.readouterr().out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["env_steps"] == 192
    # length=400 cannot be finished in 7 steps: every episode is cut by the time limit
    assert {r["train/episode_length"] for r in rows if "train/episode_length" in r} == {7.0}

    _forget_user_env()
    assert main(["eval", str(run), "--episodes", "3"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["env_id"] == user_env and result["episodes"] == 3
    assert result["mean_length"] == 7.0

    # without the module on the path, eval says which module it needs, in one line
    _forget_user_env()
    sys.path.remove(str(tmp_path / "user_code"))
    err = _error(capsys, ["eval", str(run)])
    assert err == (
        f"error: env id '{user_env}': cannot import module 'my_corridor'; put its folder on "
        "PYTHONPATH (or run from that folder)"
    )


# --- help and the sources of the settings ---------------------------------------------------------
def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_every_flag_of_every_subcommand_has_help_and_a_default():
    parser = build_parser()
    checked = 0
    for name, sub in _subparsers(parser):
        formatter = sub._get_formatter()
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(
                action, (argparse._HelpAction, argparse._SubParsersAction)
            ):
                continue
            shown = formatter._get_help_string(action) or ""
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert (action.help or "").strip(), f"{label} has no help text"
            if action.option_strings:  # positional arguments have no default to show
                assert "default" in shown, f"{label} does not show its default: {shown!r}"
            checked += 1
    assert checked > 80  # train alone has one flag per Config field


def test_train_help_shows_defaults_and_algorithm_specific_ones():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    flat = " ".join(text.split())
    assert "--learning-rate FLOAT learning rate" in flat and "(default: 0.0003)" in flat
    # hidden_sizes differs for the off-policy algorithms: both defaults are shown
    assert "hidden layer widths (default: 64 64; ddpg, td3, sac: 256 256)" in flat
    assert "(default: false; ppo, ppo_kl on continuous actions without a preset: true)" in flat
    assert "--env-kwargs" in flat and "module:EnvId" in flat and "--report-to" in flat
    assert "--lr " not in flat  # deprecated spellings still parse but are not advertised


def test_start_of_a_run_says_where_each_setting_came_from(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("gamma: 0.95\nnum_envs: 2\n")
    argv = ["train", "--config", str(config), "--steps", "64", "--num-steps", "32"]
    argv += ["--eval-episodes", "1", "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("settings:")
    preset, from_file, flags, defaults = lines[start + 1 : start + 5]
    # the preset's num_envs, num_steps and gamma were overridden: they are listed where from
    assert preset.startswith("  ppo_CartPole-v1.yaml: gae_lambda=0.8, learning_rate=0.0025")
    assert "num_envs" not in preset and "num_steps" not in preset and "gamma" not in preset
    assert from_file == f"  {config}: num_envs=2, gamma=0.95"
    assert flags == "  flags: total_steps=64, num_steps=32, eval_episodes=1"
    assert defaults.startswith("  defaults: every other setting")
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert (saved["gamma"], saved["num_envs"], saved["num_steps"]) == (0.95, 2, 32)


@pytest.mark.parametrize(
    ("env_id", "flags", "normalised"),
    [
        ("MountainCarContinuous-v0", [], {"norm_obs": True, "norm_reward": True}),
        ("MountainCarContinuous-v0", ["--norm-reward", "false"], {"norm_obs": True}),
        ("MountainCar-v0", [], {}),  # discrete actions: Config's defaults
    ],
)
def test_continuous_ppo_without_preset_normalises_and_says_so(
    tmp_path, capsys, env_id, flags, normalised
):
    argv = ["train", "--env", env_id, "--steps", "64", "--num-envs", "1", *flags]
    argv += ["--num-steps", "64", "--eval-episodes", "1", "--max-episode-steps", "5"]
    assert main([*argv, "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "(preset: none)" in lines[0]
    shown = ", ".join(f"{k}={v}" for k, v in normalised.items())
    assert ("  ppo defaults for continuous actions: " + shown in lines) == bool(normalised)
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    expected = {"norm_obs": False, "norm_reward": False, **normalised}
    if flags:
        expected["norm_reward"] = False
    assert {k: saved[k] for k in expected} == expected


def test_a_preset_or_config_file_wins_over_the_continuous_defaults(tmp_path, monkeypatch):
    import classic_control.config
    from classic_control.settings import resolve

    # a preset that leaves normalisation alone: its env gets Config's defaults (off)
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "ppo_MountainCarContinuous-v0.yaml").write_text("gamma: 0.99\n")
    with monkeypatch.context() as m:
        m.setattr(classic_control.config, "PRESET_DIR", presets)
        cfg, preset = resolve("ppo", "MountainCarContinuous-v0", {})
    assert preset == "ppo_MountainCarContinuous-v0.yaml"
    assert (cfg.norm_obs, cfg.norm_reward) == (False, False)
    config = tmp_path / "c.yaml"
    config.write_text("norm_obs: false\n")
    cfg, _ = resolve("ppo", "MountainCarContinuous-v0", {}, config_file=config)
    assert (cfg.norm_obs, cfg.norm_reward) == (False, True)
    cfg, _ = resolve("a2c", "MountainCarContinuous-v0", {})  # measured for ppo and ppo_kl
    assert (cfg.norm_obs, cfg.norm_reward) == (False, False)


# --- TensorBoard -----------------------------------------------------------------------------------
def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.slow
def test_tensorboard_holds_the_metrics_rows_and_resume_purges_the_lost_part(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--steps", "256", "--report-to", "tensorboard", "--eval-every", "128"]
    argv += ["--checkpoint-every", "128", "--out", str(run), *TINY]
    from classic_control.settings import resolve
    from classic_control.trainer import Trainer

    # first session: 3 updates of 64 steps, the checkpoint at 128 env steps
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in Config.__dataclass_fields__}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    cfg, _ = resolve("ppo", "CartPole-v1", overrides)
    assert cfg.report_to == ["tensorboard"]
    trainer = Trainer(cfg, run)
    trainer.train(stop_after=3, show_progress=False)
    trainer.close()
    assert [s for s, _ in _scalars(run)["loss/policy"]] == [64, 128, 192]

    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scalars = _scalars(run)
    for key in ("loss/policy", "loss/value", "policy/approx_kl", "eval/return_mean", "lr"):
        expected = [(r["env_steps"], pytest.approx(r[key], rel=1e-6)) for r in rows if key in r]
        assert scalars[key] == expected, key  # the resumed 192 replaced the lost one
    assert [s for s, _ in scalars["loss/policy"]] == [64, 128, 192, 256]


def test_report_to_none_alone_means_no_tracker(tmp_path):
    from classic_control.config import ConfigError
    from classic_control.settings import resolve

    config = tmp_path / "c.yaml"
    config.write_text("report_to: tensorboard\n")  # a string, as TRL configs write it
    assert resolve("ppo", "CartPole-v1", {}, config_file=config)[0].report_to == ["tensorboard"]
    assert Config(report_to=["none"]).report_to == []
    assert Config(report_to=["tensorboard", "tensorboard"]).report_to == ["tensorboard"]
    with pytest.raises(ConfigError, match="unknown report_to 'none'"):
        Config(report_to=["tensorboard", "none"])


def test_without_report_to_there_is_no_event_file(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--steps", "64", "--out", str(run), *TINY]) == 0
    assert not (run / "tensorboard").exists()


def test_missing_tensorboard_package_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if not installed
    err = _error(capsys, ["train", "--report-to", "tensorboard", "--out", str(tmp_path / "r")])
    assert "needs the tensorboard package" in err and "pip install tensorboard" in err
    assert not (tmp_path / "r").exists()
