"""Bad input to the classic_control CLI: one `error:` line, exit code 2, nothing trained."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from classic_control.__main__ import main


class _DictObsEnv(gym.Env):
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (2,))})
    action_space = gym.spaces.Discrete(2)


class _MultiBinaryActEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (3,), dtype=np.float32)
    action_space = gym.spaces.MultiBinary(4)


gym.register("TestDictObs-v0", entry_point=_DictObsEnv)
gym.register("TestMultiBinary-v0", entry_point=_MultiBinaryActEnv)


def _error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_unknown_env_names_close_matches(capsys, tmp_path):
    err = _error(capsys, ["train", "--env", "CartPol-v1", "--out", str(tmp_path / "r")])
    assert "'CartPol-v1'" in err and "CartPole-v1" in err and "classic_control envs" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("env_id", "what"),
    [("TestDictObs-v0", "observation space Dict"), ("TestMultiBinary-v0", "action space Multi")],
)
def test_unsupported_spaces(capsys, tmp_path, env_id, what):
    err = _error(capsys, ["train", "--env", env_id, "--out", str(tmp_path / "r")])
    assert f"unsupported {what}" in err and "supported: Box" in err


def test_unknown_algorithm_lists_valid(capsys):
    err = _error(capsys, ["train", "--algo", "dqn"])
    assert "'dqn'" in err and "valid: ppo, a2c, reinforce" in err and "sac" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--learning-rate", "-0.001"], "learning_rate must be > 0, got -0.001"),
        (["--clip-eps", "0"], "clip_eps must be > 0, got 0"),
        (["--gamma", "1.5"], "gamma must be in [0, 1], got 1.5"),
        (["--num-envs", "3", "--num-steps", "5", "--num-minibatches", "4"], "not divisible"),
        (["--activation", "gelu"], "valid: tanh, relu"),
    ],
)
def test_invalid_hyperparameters(capsys, tmp_path, flags, message):
    err = _error(capsys, ["train", "--out", str(tmp_path / "r"), *flags])
    assert message in err
    assert not (tmp_path / "r").exists()


def test_unknown_key_in_config_file(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lerning_rate: 0.1\n")
    err = _error(capsys, ["train", "--config", str(cfg)])
    assert "lerning_rate" in err and "valid keys" in err


@pytest.mark.parametrize("command", [["eval"], ["train", "--resume"]])
def test_folder_that_is_not_a_run(capsys, tmp_path, command):
    (tmp_path / "notes.txt").write_text("hello")
    err = _error(capsys, [*command, str(tmp_path)])
    assert "is not a classic_control run" in err
    err = _error(capsys, [*command, str(tmp_path / "missing")])
    assert "does not exist" in err
    (tmp_path / "config.yaml").write_text("")
    assert "does not hold a run's config" in _error(capsys, [*command, str(tmp_path)])
    (tmp_path / "config.yaml").write_text("algo: [ppo\n")
    assert "not valid YAML at line 2" in _error(capsys, [*command, str(tmp_path)])


def test_damaged_checkpoint_is_a_clean_error(capsys, tmp_path):
    main(
        [
            "train",
            "--steps",
            "256",
            "--num-envs",
            "2",
            "--num-steps",
            "64",
            "--eval-episodes",
            "1",
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ]
    )
    capsys.readouterr()
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    err = _error(capsys, ["train", "--resume", str(tmp_path / "r")])
    assert "cannot read" in err and "checkpoint.pt" in err
    err = _error(capsys, ["train", "--out", str(tmp_path / "r")])
    assert "already holds a run" in err and "--resume" in err


def test_resume_refuses_options_it_would_ignore(capsys, tmp_path):
    # refused before the run folder is even read: the saved config decides a resumed run
    # (--steps is not among them: with --resume it extends the budget, test_classic_resume.py)
    argv = ["train", "--resume", str(tmp_path), "--learning-rate", "0.1", "--seed", "9"]
    err = _error(capsys, argv)
    assert "--learning-rate" in err and "--seed" in err and "saved config" in err
    err = _error(capsys, [*argv[:3], "--lr", "0.1"])  # an old flag name counts too
    assert "drop --lr " in err and "saved config" in err
