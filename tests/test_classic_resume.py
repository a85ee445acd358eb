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
