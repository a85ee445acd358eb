"""The compare sweep end to end, its resume after an interruption, and the report CLI."""

from __future__ import annotations

import json
import sys

import pytest

from classic_control.__main__ import main
from classic_control.compare import records
from classic_control.compare.sweep import execute, plan, run_sweep, train_overrides
from classic_control.config import ConfigError
from classic_control.settings import resolve
from classic_control.trainer import Trainer

ENV = "CartPole-v1"


@pytest.mark.slow
def test_tiny_sweep_end_to_end_and_rerun_skips(tmp_path, capsys):
    out = tmp_path / "res"
    argv = [
        "compare",
        "--algos",
        "a2c",
        "trpo",
        "--seeds",
        "2",
        "--steps",
        "600",
        "--eval-every",
        "300",
        "--eval-episodes",
        "2",
        "--jobs",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    paths = sorted((out / "records").glob("*/*/seed*.json"))
    assert [p.relative_to(out / "records").as_posix() for p in paths] == [
        f"{ENV}/a2c/seed0.json",
        f"{ENV}/a2c/seed1.json",
        f"{ENV}/trpo/seed0.json",
        f"{ENV}/trpo/seed1.json",
    ]
    rec = json.loads(paths[0].read_text())
    assert rec["protocol"] == {"steps": 600, "eval_every": 300, "eval_episodes": 2}
    assert rec["env_steps"] >= 600 and rec["config"]["seed"] == 0
    assert [c["env_steps"] >= g for c, g in zip(rec["curve"], (300, 600))] == [True, True]
    assert rec["versions"]["torch"] and "commit" in rec["git"] and rec["steps_per_s"] > 0
    md = (out / "report" / "report.md").read_text()
    assert "| a2c | 2 |" in md and "| trpo | 2 |" in md and "reached 475" in md
    for name in ("curves", "steps_to_threshold", "wallclock"):
        assert (out / "report" / f"{name}_{ENV}.png").stat().st_size > 1000

    before = {p: p.read_bytes() for p in paths}
    capsys.readouterr()
    assert main(argv) == 0  # the same command again: nothing to do, nothing rewritten
    assert "0 runs finished, 4 already had records" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in paths} == before

    # the report is rebuilt from the records alone
    for f in (out / "report").iterdir():
        f.unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "report.md").read_text() == md


@pytest.mark.slow
def test_interrupted_sweep_resumes_and_keeps_finished_records(tmp_path):
    out = tmp_path / "res"
    specs = plan(["a2c"], [ENV], seeds=3, steps=768, eval_every=256, eval_episodes=2)
    meta = records.sweep_meta()
    # seed 0 finished earlier
    execute(specs[0], out, meta)
    done = records.record_path(out, ENV, "a2c", 0)
    finished_bytes = done.read_bytes()
    # seed 1 was killed after its checkpoint at 256 steps (3 updates of 128 logged)
    cfg, _ = resolve("a2c", ENV, {**train_overrides(specs[1]), "checkpoint_every": 256})
    trainer = Trainer(cfg, records.run_path(out, ENV, "a2c", 1))
    assert trainer.train(show_progress=False, stop_after=3) is None
    trainer.close()
    # ... while a record write was torn (the atomic writer's temp file is left behind)
    torn = done.parent / ".seed1.json.abc123.tmp"
    torn.write_text('{"algo": "a2')
    # seed 2 never started

    result = run_sweep(specs, out, jobs=2, show_progress=False)
    assert result.skipped == [specs[0].name]
    assert sorted(result.finished) == sorted([specs[1].name, specs[2].name])
    assert not result.failed
    assert done.read_bytes() == finished_bytes  # never rewritten
    resumed = json.loads(records.record_path(out, ENV, "a2c", 1).read_text())
    fresh = json.loads(records.record_path(out, ENV, "a2c", 2).read_text())
    assert resumed["resumed"] is True and fresh["resumed"] is False
    for rec in (resumed, fresh):
        steps = [c["env_steps"] for c in rec["curve"]]
        assert steps == sorted(set(steps)) and steps[0] == 256 and steps[-1] >= 768
    assert len(records.load_records(out)) == 3  # the temp file is not a record
    with pytest.raises(FileExistsError):
        records.write_record(done, {"algo": "a2c"})


def test_results_folder_protocol_clash_and_bad_input(tmp_path, capsys):
    out = tmp_path / "res"
    out.mkdir()
    protocol = {"steps": 1000, "eval_every": 500, "eval_episodes": 2}
    records.update_manifest(out, protocol, {"algos": ["ppo"], "envs": [ENV], "seeds": [0]})
    records.check_manifest(out, protocol)
    with pytest.raises(ConfigError, match="steps=1000 \\(asked 2000\\)"):
        records.check_manifest(out, {**protocol, "steps": 2000})
    with pytest.raises(ConfigError, match="no records/ folder"):
        records.load_records(out)
    assert main(["report", str(out)]) == 2
    assert main(["compare", "--algos", "ppo", "sarsa", "--out", str(out)]) == 2
    assert main(["compare", "--seeds", "0", "--out", str(out)]) == 2
    assert main(["compare", "--steps", "2000", "--out", str(out)]) == 2  # protocol clash
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "valid: ppo, a2c, reinforce, trpo, a3c" in err[1]


def test_sb3_baseline_missing_extra_is_one_clear_error(monkeypatch):
    from classic_control.compare.cli import sb3_algos

    monkeypatch.setitem(sys.modules, "sb3_contrib", None)  # import now raises ImportError
    # stable-baselines3 itself may be missing too (it is a benchmark-only extra)
    with pytest.raises(ConfigError, match=r"needs (stable-baselines3, )?sb3-contrib .*pip install"):
        sb3_algos(["ppo", "trpo"])
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    with pytest.raises(ConfigError, match="needs stable-baselines3"):
        sb3_algos(["ppo"])  # without trpo only SB3 itself is needed
