"""Resume equals an uninterrupted run; same seed, same metrics; eval and video from the CLI."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import pytest
from safetensors.torch import load_file

from classic_control.__main__ import main
from classic_control.metrics import is_timing
from classic_control.settings import resolve
from classic_control.trainer import Trainer

SMALL = {
    "ppo": {"num_envs": 4, "num_steps": 64, "num_minibatches": 2, "update_epochs": 2},
    "a2c": {"num_envs": 4, "num_steps": 16},
    "reinforce": {"episodes_per_batch": 4},
}


def _cfg(algo: str, env_id: str, seed: int = 0, **kw):
    values = {
        "seed": seed,
        "total_steps": 3000,
        "eval_every": 1000,
        "eval_episodes": 2,
        "checkpoint_every": 1000,
        **SMALL[algo],
        **kw,
    }
    return resolve(algo, env_id, values)[0]


def _run(cfg, run_dir, *, resume=False, stop_after=None):
    trainer = Trainer(cfg, run_dir)
    try:
        return trainer.train(resume=resume, show_progress=False, stop_after=stop_after)
    finally:
        trainer.close()


def _learning_metrics(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    return [{k: v for k, v in r.items() if not is_timing(k)} for r in rows]


def _same_weights(a, b) -> bool:
    wa, wb = load_file(a / "model_final.safetensors"), load_file(b / "model_final.safetensors")
    return wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algo", "env_id", "extra"),
    [
        ("ppo", "CartPole-v1", {}),
        # continuous actions, obs normalisation and reward scaling, episodes cut mid-rollout
        ("ppo", "Pendulum-v1", {"norm_obs": True, "norm_reward": True}),
        ("a2c", "Acrobot-v1", {"norm_obs": True}),
        ("reinforce", "CartPole-v1", {"checkpoint_every": 500}),
    ],
)
def test_resume_equals_uninterrupted(tmp_path, algo, env_id, extra):
    cfg = _cfg(algo, env_id, **extra)
    full = _run(cfg, tmp_path / "full")
    # the interrupted run stops a few updates after its last checkpoint: those rows are lost
    # and redone on resume, exactly as after a kill
    stop_after = {"ppo": 7, "a2c": 18, "reinforce": 12}[algo]
    assert _run(cfg, tmp_path / "cut", stop_after=stop_after) is None
    assert (tmp_path / "cut" / "checkpoint.pt").is_file()
    assert not (tmp_path / "cut" / "eval.json").exists()
    resumed = _run(cfg, tmp_path / "cut", resume=True)
    assert _learning_metrics(tmp_path / "cut") == _learning_metrics(tmp_path / "full")
    assert resumed["returns"] == full["returns"]
    assert _same_weights(tmp_path / "cut", tmp_path / "full")


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    cfg = _cfg("ppo", "CartPole-v1")
    _run(cfg, tmp_path / "a")
    _run(cfg, tmp_path / "b")
    _run(_cfg("ppo", "CartPole-v1", seed=1), tmp_path / "c")
    a, b, c = (_learning_metrics(tmp_path / n) for n in "abc")
    assert a == b
    assert a != c


@pytest.mark.slow
def test_cli_train_eval_and_video(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--algo",
            "ppo",
            "--env",
            "CartPole-v1",
            "--steps",
            "1024",
            "--num-envs",
            "4",
            "--num-steps",
            "64",
            "--eval-episodes",
            "3",
            "--out",
            str(run),
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "preset: ppo_CartPole-v1.yaml" in out and "over 3 deterministic episodes" in out
    config = (run / "config.yaml").read_text()
    assert "num_envs: 4" in config and "total_steps: 1024" in config and "gamma: 0.98" in config
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in (
        "env_steps",
        "train/episode_return",
        "loss/policy",
        "loss/value",
        "loss/entropy",
        "policy/approx_kl",
        "policy/clipfrac",
        "value/explained_variance",
        "throughput/env_steps_per_s",
        "eval/return_mean",
    ):
        assert key in header
    assert (run / "curve.png").stat().st_size > 1000

    code = main(["eval", str(run), "--episodes", "2", "--model", "best", "--video"])
    assert code == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["episodes"] == 2 and len(result["returns"]) == 2
    assert result["env_steps"] == 1024 and result["model"] == "model_best.safetensors"
    frames = imageio.mimread(result["video"])
    assert len(frames) > 5 and frames[0].ndim == 3
    assert "mean return" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_with_more_steps_equals_a_run_started_with_them(tmp_path, capsys):
    # constant learning rate and clip range: nothing is scheduled over the budget, so training
    # a finished 1,024-step run on to 2,048 steps must take exactly the updates of a run
    # started with 2,048 (same rows, same weights); the first budget's evaluations stay valid
    common = [
        "train", "--algo", "ppo", "--env", "CartPole-v1", "--seed", "3", "--no-progress",
        "--num-envs", "4", "--num-steps", "64", "--num-minibatches", "2", "--update-epochs", "2",
        "--anneal-lr", "false", "--anneal-clip", "false", "--eval-every", "512",
        "--eval-episodes", "2",
    ]  # fmt: skip
    short, full = tmp_path / "short", tmp_path / "full"
    assert main([*common, "--steps", "1024", "--out", str(short)]) == 0
    first_budget = _learning_metrics(short)
    assert main(["train", "--resume", str(short), "--steps", "2048", "--no-progress"]) == 0
    assert main([*common, "--steps", "2048", "--out", str(full)]) == 0
    assert "extending the budget from 1024 to 2048" in capsys.readouterr().out
    extended = _learning_metrics(short)
    assert extended[: len(first_budget)] == first_budget
    assert extended == _learning_metrics(full)
    assert extended[-1]["env_steps"] == 2048
    assert _same_weights(short, full)
    # and the saved config now says 2,048, so a later plain --resume keeps the new budget
    assert "total_steps: 2048" in (short / "config.yaml").read_text()


def test_resume_with_steps_refuses_a_smaller_budget_or_a_schedule(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--algo", "ppo", "--env", "CartPole-v1", "--no-progress", "--steps", "256",
            "--num-envs", "2", "--num-steps", "64", "--num-minibatches", "1",
            "--eval-every", "0", "--eval-episodes", "1", "--out", str(run)]  # fmt: skip
    assert main(argv) == 0  # the PPO default anneals its learning rate
    capsys.readouterr()
    for steps, words in (("128", ["--steps 128", "must exceed", "256"]),
                         ("512", ["anneal_lr", "total_steps=256", "new run"])):  # fmt: skip
        assert main(["train", "--resume", str(run), "--steps", steps]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert "total_steps: 256" in (run / "config.yaml").read_text()  # nothing rewritten
