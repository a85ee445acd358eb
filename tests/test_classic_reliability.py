"""Issue 17 for classic_control: one writer per run folder, eval keeps the training fields,
leftovers of killed saves are removed, SIGTERM stops a run with a checkpoint that resumes,
and no worker outlives a killed parent (A3C workers, compare's worker processes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from classic_control import rundir
from classic_control.__main__ import main
from classic_control.trainer import Trainer
from rlhf_pg.utils.run_folder import LOCK_NAME, lock_run_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--num-envs", "1", "--num-steps", "32", "--eval-episodes", "1", "--no-progress"]
# runs that only a signal ends: no evaluation or checkpoint before the end of the budget
ENDLESS = ["--steps", "100000000", "--eval-every", "0", "--checkpoint-every", "0"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ppo"
    assert main(["train", "--steps", "32", *TINY, "--out", str(out)]) == 0
    return out


def _wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _rows(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


# --- one writer per run folder --------------------------------------------------------------
def _holder(folder: Path) -> subprocess.Popen:
    """Another process that claims ``folder`` and keeps it until killed."""
    code = f"from rlhf_pg.utils.run_folder import lock_run_folder as f; k = f({str(folder)!r}); input()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
    )
    lock = folder / LOCK_NAME
    _wait_for(lambda: lock.exists() and lock.read_text().strip() != "", 30, "the other claim")
    return proc


def test_second_writer_gets_one_line_naming_folder_and_pid(capsys, tmp_path, finished_run):
    run = tmp_path / "r"
    shutil.copytree(finished_run, run)
    holder = _holder(run)
    try:
        capsys.readouterr()
        for argv in (
            ["train", "--resume", str(run), "--no-progress"],
            ["eval", str(run), "--episodes", "1"],
            ["train", "--steps", "32", *TINY, "--out", str(run)],
        ):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert err.count("\n") == 0 and err.startswith("error: "), err
            assert f"'{run}'" in err and f"process {holder.pid} " in err, err
    finally:
        holder.kill()  # kill -9: the lock file stays behind with the dead pid
        holder.wait()
    assert (run / LOCK_NAME).read_text().split()[0] == str(holder.pid)
    # a stale lock is no obstacle: the next run goes ahead and releases it at the end
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert not (run / LOCK_NAME).exists()


@pytest.mark.slow
def test_compare_removes_torn_records_before_the_sweep(capsys, tmp_path):
    res = tmp_path / "res"
    folder = res / "records" / "CartPole-v1" / "a2c"
    folder.mkdir(parents=True)
    torn = [folder / ".seed0.json.abcd1234.tmp", res / ".sweep.json.abcd1234.tmp"]
    for path in torn:
        path.write_text('{"algo": "a2')
    argv = ["compare", "--algos", "a2c", "--seeds", "1", "--steps", "64", "--jobs", "1"]
    argv += ["--eval-episodes", "1", "--no-progress", "--no-report", "--out", str(res)]
    assert main(argv) == 0
    assert not any(p.exists() for p in torn)
    assert (folder / "seed0.json").is_file()


def test_compare_refuses_a_results_folder_in_use(capsys, tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    holder = _holder(res)
    try:
        argv = ["compare", "--algos", "a2c", "--seeds", "1", "--steps", "64", "--out", str(res)]
        assert main(argv) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip()
    assert f"results folder '{res}' is in use by process {holder.pid} " in err, err
    assert not (res / "sweep.json").exists()
    lock = lock_run_folder(res)  # the killed holder's lock is stale
    lock.release()


# --- eval.json and leftovers ----------------------------------------------------------------
def test_eval_keeps_the_training_fields(tmp_path, finished_run):
    run = tmp_path / "r"
    shutil.copytree(finished_run, run)
    trained = json.loads((run / rundir.EVAL).read_text())
    assert main(["eval", str(run), "--episodes", "2", "--model", "best"]) == 0
    after = json.loads((run / rundir.EVAL).read_text())
    for key in ("env_steps", "best_eval_return", "train_time_s"):
        assert after[key] == trained[key], key
    assert after["episodes"] == 2 and after["model"] == rundir.MODEL_BEST


def test_resume_removes_temporaries_of_killed_saves(tmp_path, finished_run):
    run = tmp_path / "r"
    shutil.copytree(finished_run, run)
    torn = [run / ".checkpoint.pt.k3j9x0ab.tmp", run / ".eval.json.q1w2e3r4.tmp"]
    torn.append(run / ".curve.png.a1b2c3d4.tmp")
    for path in torn:
        path.write_bytes(b"torn")
    keep = run / ".notes"  # not a temporary file: stays
    keep.write_text("mine")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert not any(p.exists() for p in torn) and keep.read_text() == "mine"


# --- signals and orphans ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "a3c"])
def test_sigterm_stops_with_a_checkpoint_that_resumes(tmp_path, algo):
    run = tmp_path / "r"
    extra = ["--num-workers", "2", "--num-steps", "8"] if algo == "a3c" else []
    argv = ["-m", "classic_control", "train", "--algo", algo, *TINY, *ENDLESS, *extra]
    proc = _start([*argv, "--out", str(run)], tmp_path)
    try:
        _wait_for(lambda: _rows(run / rundir.METRICS) >= 2, 120, "two updates")
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert b"checkpoint saved" in out and b"Traceback" not in err, err.decode()
    _, alive = psutil.wait_procs(children, timeout=10)  # the workers were stopped, not orphaned
    assert not alive, alive
    assert not (run / LOCK_NAME).exists()
    # the checkpoint holds every logged row and restores the step they reached
    trainer = Trainer(rundir.read_config(run), run)
    try:
        rows = trainer.load_checkpoint()
    finally:
        trainer.close()
    logged = rundir.read_metrics(run)
    assert rows == len(logged) >= 2 and trainer.env_steps == logged[-1]["env_steps"]
    if algo != "ppo":
        return
    # ... and `--resume` continues it: with a budget of two more updates, the run finishes
    # and its metrics go on from the step where SIGTERM stopped it
    config = (run / rundir.CONFIG).read_text().replace("100000000", str(trainer.env_steps + 64))
    (run / rundir.CONFIG).write_text(config)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    steps = [r["env_steps"] for r in rundir.read_metrics(run)]
    assert steps == list(range(32, trainer.env_steps + 65, 32))


def _kill_parent_and_check_orphans(proc: subprocess.Popen, min_children: int) -> None:
    children = psutil.Process(proc.pid).children(recursive=True)
    try:
        assert len(children) >= min_children, children
        proc.kill()
        proc.wait()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, [(p.pid, p.cmdline()[:4]) for p in alive]
    finally:
        for p in children:  # never leave them to the rest of the suite
            if p.is_running():
                p.kill()


@pytest.mark.slow
def test_kill_9_of_an_a3c_run_leaves_no_worker(tmp_path):
    run = tmp_path / "r"
    argv = ["-m", "classic_control", "train", "--algo", "a3c", "--num-workers", "2", *TINY]
    proc = _start([*argv, *ENDLESS, "--num-steps", "8", "--out", str(run)], tmp_path)
    try:
        _wait_for(lambda: _rows(run / rundir.METRICS) >= 1, 120, "the workers' first rows")
        _kill_parent_and_check_orphans(proc, min_children=2)
    finally:
        proc.kill()


@pytest.mark.slow
def test_kill_9_of_a_compare_sweep_leaves_no_worker(tmp_path):
    res = tmp_path / "res"
    argv = ["-m", "classic_control", "compare", "--algos", "a2c", "--seeds", "2", "--jobs", "2"]
    argv += ["--steps", "100000000", "--eval-every", "0", "--eval-episodes", "1", "--no-progress"]
    proc = _start([*argv, "--out", str(res)], tmp_path)
    metrics = [res / "runs" / "CartPole-v1" / "a2c" / f"seed{s}" / rundir.METRICS for s in (0, 1)]
    try:
        _wait_for(lambda: all(_rows(m) >= 1 for m in metrics), 120, "both runs' first rows")
        _kill_parent_and_check_orphans(proc, min_children=2)
        sizes = [m.stat().st_size for m in metrics]
        time.sleep(1.0)
        assert [m.stat().st_size for m in metrics] == sizes  # nothing writes there any more
    finally:
        proc.kill()


@pytest.mark.slow
def test_sigterm_stops_a_compare_sweep_with_checkpoints(tmp_path):
    res = tmp_path / "res"
    argv = ["-m", "classic_control", "compare", "--algos", "a2c", "--seeds", "1", "--jobs", "1"]
    argv += ["--steps", "100000000", "--eval-every", "0", "--eval-episodes", "1", "--no-progress"]
    proc = _start([*argv, "--out", str(res)], tmp_path)
    run = res / "runs" / "CartPole-v1" / "a2c" / "seed0"
    try:
        _wait_for(lambda: _rows(run / rundir.METRICS) >= 2, 120, "two updates")
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert b"1 runs saved a checkpoint" in out and b"Traceback" not in err, err.decode()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    # the run can be continued: its checkpoint covers every row it logged; no record, no failure
    assert rundir.load_checkpoint(run)["metrics_rows"] == _rows(run / rundir.METRICS)
    assert not (res / "records").exists() and not (res / "failed").exists()
    assert not (res / LOCK_NAME).exists() and not (run / LOCK_NAME).exists()
