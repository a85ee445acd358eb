"""bench/rlhf_algorithms.py (the offline comparison of RLHF algorithms): its --quick smoke run
on the tiny demo models, resuming, the table's gold-at-KL reading, and bad arguments."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_fixtures import shared_cache, tiny_sft_and_rm

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "rlhf_algorithms.py"
sys.path.insert(0, str(ROOT / "bench"))

import rlhf_algorithms as bench  # noqa: E402
import rlhf_algorithms_report as report  # noqa: E402

EVAL_KEYS = {"step", "train_seconds", "proxy", "gold", "gold_positive", "kl", "response_length"}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return tiny_sft_and_rm(shared_cache(tmp_path_factory))


@pytest.mark.slow
def test_quick_run_writes_every_result_the_table_and_plots_and_resumes(tiny_models, tmp_path):
    sft, rm = tiny_models
    out = tmp_path / "cmp"
    models = ["--sft-model", str(sft), "--reward-model", str(rm), "--out", str(out)]
    bench.main(["--quick", "--seeds", "0", "--threads", "1", *models])

    runs = out / "runs"
    expected = {f"{name}-seed0.json" for name in bench.ALGORITHMS} | {"overopt-rloo-seed0.json"}
    assert {p.name for p in runs.glob("*.json")} == expected
    results = {p.name: json.loads(p.read_text()) for p in runs.glob("*.json")}
    step0 = results["ppo-seed0.json"]["evals"][0]
    for name, r in results.items():
        steps = bench.QUICK.overopt_steps if name.startswith("overopt") else bench.QUICK.steps
        assert r["steps"] == steps and len(r["step_seconds"]) == steps, name
        # evaluations at step 0 and after every step (eval_every 1), training time rising
        assert [e["step"] for e in r["evals"]] == list(range(steps + 1)), name
        assert all(set(e) == EVAL_KEYS for e in r["evals"]), name
        assert all(math.isfinite(e[k]) for e in r["evals"] for k in EVAL_KEYS), name
        times = [e["train_seconds"] for e in r["evals"]]
        assert times == sorted(times) and times[0] == 0.0, name
        assert r["train_seconds"] == pytest.approx(sum(r["step_seconds"]))
        assert 0 < r["train_seconds"] < r["wall_seconds"], name
        # step 0 is the SFT policy for everyone: same samples, KL to itself 0
        assert r["evals"][0]["gold"] == pytest.approx(step0["gold"]), name
        assert r["evals"][0]["proxy"] == pytest.approx(step0["proxy"], abs=1e-5), name
        assert abs(r["evals"][0]["kl"]) < 1e-4, name
    assert results["overopt-rloo-seed0.json"]["kl_coef"] == bench.QUICK.overopt_kl_coef
    n_pairs = len((rm / "pairs_train.jsonl").read_text().splitlines())
    assert results["dpo-seed0.json"]["pairs"] == n_pairs

    table = (out / "table.md").read_text()
    for label in bench.ALGORITHMS.values():
        assert f"| {label} | 1 | {bench.QUICK.steps} |" in table
    assert "Over-optimisation: RLOO (k=4), KL coefficient 0.002" in table
    for png in ("frontier.png", "gold_vs_time.png", "overoptimisation.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png

    # a second call keeps the finished runs (files untouched) and only adds the new seed
    before = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    bench.main(["--quick", "--seeds", "0", "1", "--algorithms", "rloo", "--no-overopt",
                "--threads", "1", *models])  # fmt: skip
    after = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    assert set(after) == set(before) | {"rloo-seed1.json"}
    assert all(after[name] == mtime for name, mtime in before.items())
    assert "| RLOO (k=4) | 2 | 2 |" in (out / "table.md").read_text()


def test_gold_at_kl_reads_each_curve_in_training_order():
    evals = [{"kl": 0.0, "gold": 0.1, "proxy": 0.0}, {"kl": 4.0, "gold": 0.5, "proxy": 1.0},
             {"kl": 2.0, "gold": 0.9, "proxy": 2.0}]  # fmt: skip
    assert report.read_at(evals, "kl", 1.0) == pytest.approx(0.2)  # 0.1 + 0.4 * 1 / 4
    assert report.read_at(evals, "kl", 3.0) == pytest.approx(0.4)  # first pass, on the way up
    assert report.read_at(evals, "kl", 5.0) is None  # beyond the curve
    runs = [
        {"evals": evals, "steps": 2, "step_seconds": [1.0, 3.0], "train_seconds": 4.0},
        {"evals": [{"kl": 0.0, "gold": 0.3, "proxy": 0.0}, {"kl": 2.0, "gold": 0.7, "proxy": 1.0}],
         "steps": 2, "step_seconds": [2.0, 2.0], "train_seconds": 4.0},
    ]  # fmt: skip
    row = report.main_table({"rloo": runs})[2]
    # final gold mean (0.9 + 0.7) / 2; at KL 2: (0.3 + 0.7) / 2 = 0.5; KL 4 unreached by seed 2
    assert row.startswith("| RLOO (k=4) | 2 | 2 | +0.800 (+0.700..+0.900) |")
    assert "| +0.500 | - | - |" in row


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--algorithms", "ppo", "sac"], "'sac'"),
        (["--completions", "6"], "6"),
        (["--steps", "0"], "--steps"),
        (["--learning-rate", "-1"], "-1"),
        (["--overopt-algorithm", "dpo"], "'dpo'"),
        (["--seeds", "-1"], "-1"),
        (["--sft-model", "/nonexistent/sft", "--reward-model", "/nonexistent/rm"], "/nonexistent"),
        (["--sft-model", "/nonexistent/sft"], "--reward-model"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, named, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *argv, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()  # refused before any work
