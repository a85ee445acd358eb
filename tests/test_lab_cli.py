"""The lab's command line: bad input is one error line before any work; tiny runs write
their JSON and plots."""

from __future__ import annotations

import json

import pytest

from classic_control.__main__ import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gradients", "--percents", "0", "150"], "percentages must be in 0..100"),
        (["gradients", "--episodes", "3"], "--episodes must be >= 8"),
        (["gradients", "--gamma", "1.5"], "--gamma must be in [0, 1]"),
        (["gradients", "--env", "Pendulum-v1"], "norm_obs"),
        (["importance", "--horizons", "0", "10"], "--horizons must be >= 1"),
        (["importance", "--step-kl", "0"], "--step-kl must be > 0"),
        (["actor-critic", "--steps", "100", "200"], "--steps takes 1 value"),
        (["kl-penalty", "--jobs", "0"], "--jobs must be >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    out = tmp_path / "lab"
    code = main(["lab", *argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert message in err
    assert not out.exists()


def test_tiny_gradient_and_importance_runs_write_json_and_plots(tmp_path):
    out = tmp_path / "g"
    small = ["--ppo-steps", "512", "--fit-episodes", "8", "--ref-episodes", "8", "--episodes", "8"]
    assert main(["lab", "gradients", "--out", str(out), "--percents", "0", "100", *small]) == 0
    data = json.loads((out / "gradients.json").read_text())
    assert set(data["policies"]) == {"0", "100"}
    est = data["policies"]["0"]["estimators"]
    assert est["total"]["total_variance"] > 0 and "gae_0.95" in est
    for name in ("gradient_variance", "cosine_vs_batch", "gae_lambda"):
        assert (out / f"{name}.png").stat().st_size > 1000

    # same folder: the PPO snapshots are reused, and the horizons cut the episodes
    argv = ["lab", "importance", "--out", str(out), "--percent", "100", "--horizons", "5", "12"]
    assert main([*argv, *small]) == 0
    rows = json.loads((out / "importance.json").read_text())["horizons"]
    assert [r["horizon"] for r in rows] == [5, 12]
    assert all(r["mean_length"] <= r["horizon"] for r in rows)
    assert all(0 < r["ess_fraction"] <= 1 for r in rows)
    assert (out / "importance.png").stat().st_size > 1000


def test_tiny_actor_critic_comparison_and_protocol_clash(capsys, tmp_path):
    out = tmp_path / "ac"
    argv = ["lab", "actor-critic", "--out", str(out), "--seeds", "1", "--eval-episodes", "1"]
    assert main([*argv, "--steps", "160", "--eval-every", "80"]) == 0
    data = json.loads((out / "actor_critic.json").read_text())
    runs = data["results"]["CartPole-v1"]
    assert set(runs) == {"actor_critic", "reinforce", "a2c"}
    assert all(r["budget"] == 160 and len(r["final_eval"]) == 1 for r in runs.values())
    assert (out / "actor_critic_seeds.png").stat().st_size > 1000
    assert (out / "CartPole-v1" / "report" / "report.md").is_file()
    capsys.readouterr()
    # another budget in the same folder would mix incomparable runs: refused up front
    assert main([*argv, "--steps", "320", "--eval-every", "80"]) == 2
    assert "steps=160 (asked 320)" in capsys.readouterr().err
