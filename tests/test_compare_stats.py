"""Across-seed statistics and the report's aggregation, against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from classic_control.compare import records, report, stats


def test_iqm_trims_a_quarter_from_each_end():
    # n = 10: drop 2 at each end of [-50, 1, ..., 8, 100] -> mean(2..7) = 4.5
    x = [1, 2, 3, 4, 5, 6, 7, 8, 100, -50]
    assert stats.iqm(np.array(x)) == pytest.approx(4.5)
    assert stats.iqm(np.array([10.0, 1.0, 3.0, 2.0])) == pytest.approx(2.5)  # n=4: mean(2, 3)
    assert stats.iqm(np.array([1.0, 2.0, 9.0])) == pytest.approx(4.0)  # n=3: nothing trimmed
    rows = np.array([[1.0, 2.0, 3.0, 10.0], [0.0, 0.0, 4.0, 4.0]])
    np.testing.assert_allclose(stats.iqm(rows, axis=1), [2.5, 2.0])


def test_bootstrap_ci_brackets_the_statistic_and_is_reproducible():
    x = [500.0, 480.0, 120.0, 500.0, 350.0, 500.0, 20.0, 499.0]
    point, low, high = stats.bootstrap_ci(x, stats.mean)
    assert point == pytest.approx(np.mean(x))
    assert min(x) <= low < point < high <= max(x)
    assert stats.bootstrap_ci(x, stats.mean) == (point, low, high)
    ipoint, ilow, ihigh = stats.bootstrap_ci(x, stats.iqm)
    assert ipoint == pytest.approx(np.mean(sorted(x)[2:6]))
    assert ilow <= ipoint <= ihigh
    # wider spread, wider interval
    _, l2, h2 = stats.bootstrap_ci([v * 0.1 for v in x], stats.mean)
    assert h2 - l2 == pytest.approx((high - low) * 0.1, rel=1e-6)


def test_bootstrap_ci_degenerate_inputs():
    assert stats.bootstrap_ci([7.0]) == (7.0, 7.0, 7.0)
    assert stats.bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)
    assert all(math.isnan(v) for v in stats.bootstrap_ci([]))


def test_steps_to_threshold_on_a_synthetic_curve():
    steps = [5000, 10000, 15000, 20000]
    assert stats.steps_to_threshold(steps, [100, 480, 400, 500], 475) == 10000
    assert stats.steps_to_threshold(steps, [100, 475, 400, 500], 475) == 10000  # >= counts
    assert stats.steps_to_threshold(steps, [100, 200, 300, 474.9], 475) is None
    assert stats.steps_to_threshold([1000, 2000], [-120.0, -99.0], -100) == 2000  # Acrobot


def test_censored_median_counts_misses_as_infinite():
    assert stats.censored_median([10, 20, None]) == 20
    assert stats.censored_median([10, 20, 30, None]) == 25
    assert stats.censored_median([10, None, None]) is None
    assert stats.censored_median([10, 30, None, None]) is None  # median of (30, inf)
    assert stats.censored_median([]) is None


def test_wilson_interval_hand_values():
    lo, hi = stats.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = stats.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)


def _rec(seed, curve, algo="ppo", env="CartPole-v1", time_s=10.0):
    return {
        "algo": algo,
        "env_id": env,
        "seed": seed,
        "protocol": {"steps": 20000, "eval_every": 5000, "eval_episodes": 10},
        "config": {"num_workers": 2},
        "curve": [
            {
                "env_steps": s,
                "eval/return_mean": r,
                "eval/return_std": 0.0,
                "time/elapsed": s / 1000,
            }
            for s, r in curve
        ],
        "final_eval": {"mean_return": curve[-1][1]},
        "env_steps": curve[-1][0],
        "train_time_s": time_s,
        "steps_per_s": curve[-1][0] / time_s,
    }


def test_on_grid_takes_the_first_eval_at_or_after_each_point():
    rec = _rec(0, [(5120, 10.0), (10240, 20.0), (15360, 30.0), (20480, 40.0)])
    points = report.grid([rec])
    np.testing.assert_array_equal(points, [5000, 10000, 15000, 20000])
    np.testing.assert_array_equal(report.on_grid(rec, points), [10.0, 20.0, 30.0, 40.0])
    late = _rec(1, [(5000, 1.0), (20000, 4.0)])  # a batch that jumped past two grid points
    np.testing.assert_array_equal(report.on_grid(late, points), [1.0, 4.0, 4.0, 4.0])


def test_summarize_hand_computed():
    recs = [
        _rec(0, [(5000, 100.0), (10000, 480.0), (20000, 500.0)], time_s=10.0),
        _rec(1, [(5000, 476.0), (10000, 300.0), (20000, 450.0)], time_s=20.0),
        _rec(2, [(5000, 10.0), (10000, 20.0), (20000, 30.0)], time_s=40.0),
    ]
    s = report.summarize(recs, "CartPole-v1")
    assert s["threshold"] == 475.0
    assert s["steps_to_threshold"] == [10000, 5000, None]
    assert s["reached"] == 2
    assert s["median_steps"] == 10000  # median of (5000, 10000, inf)
    assert s["mean"][0] == pytest.approx((500 + 450 + 30) / 3)
    assert s["iqm"][0] == pytest.approx((500 + 450 + 30) / 3)  # n=3 trims nothing
    assert s["median_train_s"] == 20.0
    assert s["median_sps"] == pytest.approx(1000.0)
    text = report.table("CartPole-v1", {"ppo": s})
    assert "| ppo | 3 | 326.7 [" in text and "| 2/3 [" in text and "| 10,000 |" in text
    assert text.endswith("| 20.0 | 1,000 | 1 |")  # num_workers only counts for a3c


def test_records_written_before_the_metric_renaming_are_still_read(tmp_path):
    rec = _rec(0, [(5000, 100.0), (10000, 480.0)])
    rec["curve"] = [
        {"env_steps": c["env_steps"], "eval_return": c["eval/return_mean"], "train_time_s": 1.0}
        for c in rec["curve"]
    ]  # schema 1
    path = tmp_path / "seed0.json"
    path.write_text(json.dumps(rec))
    old = records.read_record(path)
    assert old["curve"][1] == {"env_steps": 10000, "eval/return_mean": 480.0, "time/elapsed": 1.0}
    assert report.summarize([old], "CartPole-v1")["steps_to_threshold"] == [10000]
