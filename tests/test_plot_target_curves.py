"""bench/plot_target_curves.py: which seeds it reads, finished or running, and its bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import plot_target_curves as ptc  # noqa: E402

TARGET = "td3-lunarlandercontinuous"


def _run(target_dir: Path, seed: int, evals: list[tuple[int, float]], final: float | None) -> None:
    run = target_dir / f"run_seed{seed}"
    run.mkdir(parents=True)
    rows = []
    for steps, ret in evals:
        rows.append({"env_steps": steps, "loss/critic": 1.0})  # a training row: not an eval
        rows.append({"env_steps": steps, "eval/return_mean": ret})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"env_st')
    if final is not None:
        record = {"final_eval_mean": final, "reached": final >= 200.0, "env_steps": evals[-1][0]}
        (target_dir / f"seed{seed}.json").write_text(json.dumps(record))


def test_seed_curves_reads_evals_in_seed_order_and_marks_running_seeds(tmp_path):
    d = tmp_path / TARGET
    _run(d, 10, [(10_000, -50.0), (20_000, 120.0)], final=None)  # still running
    _run(d, 2, [(10_000, -80.0), (20_000, 210.0)], final=230.5)
    _run(d, 0, [(10_000, -20.0), (20_000, 90.0)], final=150.0)
    (d / "run_seed3").mkdir()  # made, but no metrics yet: skipped
    curves = ptc.seed_curves(d)
    assert [c["seed"] for c in curves] == [0, 2, 10]  # numeric order, not "10" < "2"
    assert curves[1]["evals"] == [(10_000, -80.0), (20_000, 210.0)]  # torn last line dropped
    assert curves[1]["final"]["reached"] and not curves[0]["final"]["reached"]
    assert curves[2]["final"] is None


def test_plot_writes_a_png_and_leaves_no_temp_file(tmp_path):
    _run(tmp_path / TARGET, 0, [(10_000, -20.0), (20_000, 260.0)], final=250.0)
    _run(tmp_path / TARGET, 1, [(10_000, -30.0)], final=None)
    out = tmp_path / "fig" / "curves.png"
    ptc.plot(tmp_path, [TARGET], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]


def test_a_target_without_runs_exits_2_naming_the_folder(tmp_path):
    (tmp_path / TARGET).mkdir()
    cmd = [sys.executable, str(ROOT / "bench" / "plot_target_curves.py"), str(tmp_path)]
    cmd += ["--targets", TARGET, "--out", str(tmp_path / "x.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"no run_seed* folder with metrics under {tmp_path / TARGET}" in proc.stderr
    assert not (tmp_path / "x.png").exists()
