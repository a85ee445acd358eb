"""One writer per run folder (two real processes), the rule for a used folder, and launches
whose processes do not form one group."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlhf_pg.utils.run_folder import (
    LOCK_NAME,
    OutputDirError,
    ProcessGroupError,
    RunFolderBusy,
    check_process_group,
    ensure_writable_dir,
    lock_run_folder,
    prepare_fresh_run,
)

ROOT = Path(__file__).parent.parent
HOLDER = textwrap.dedent(
    """
    import sys
    from rlhf_pg.utils.run_folder import lock_run_folder
    lock = lock_run_folder(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes our stdin (or kills us)
    """
)


def _holder(folder: Path) -> subprocess.Popen:
    """Another process that claims ``folder`` and holds it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.slow
def test_second_writer_is_refused_while_the_first_lives_and_not_after_a_kill(tmp_path):
    run = tmp_path / "run"
    first = _holder(run)
    try:
        with pytest.raises(RunFolderBusy) as err:
            lock_run_folder(run)
        message = str(err.value)
        assert "\n" not in message and f"run folder '{run}' is in use by" in message
        assert f"process {first.pid} " in message
        # kill -9 leaves the lock file behind with a dead pid: the OS freed the flock, so
        # the stale file is no obstacle
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert (run / LOCK_NAME).read_text().split()[0] == str(first.pid)
        mine = lock_run_folder(run)
        assert (run / LOCK_NAME).read_text().split()[0] == str(os.getpid())
        mine.release()  # a clean release takes the lock file along
        assert not (run / LOCK_NAME).exists()
    finally:
        if first.poll() is None:
            first.kill()


def test_claims_within_one_process_are_shared_and_counted(tmp_path):
    a = lock_run_folder(tmp_path / "run")
    b = lock_run_folder(tmp_path / "run" / ".." / "run")  # the same folder by another name
    a.release()
    assert (tmp_path / "run" / LOCK_NAME).exists()  # b still holds it
    b.release()
    b.release()  # idempotent
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    del a, b
    c = lock_run_folder(tmp_path / "run")
    del c  # garbage collection releases too
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_unusable_folders_get_one_line_naming_them(tmp_path):
    (tmp_path / "file").write_text("x")
    cases = {
        tmp_path / "file": "is a file, not a folder",
        tmp_path / "file" / "sub": f"is under '{tmp_path / 'file'}', which is a file",
    }
    if os.geteuid() != 0:  # root may write anywhere
        (tmp_path / "ro").mkdir(mode=0o500)
        cases[tmp_path / "ro" / "run"] = "cannot be created: Permission denied"
    for path, message in cases.items():
        with pytest.raises(OutputDirError) as err:
            ensure_writable_dir(path, "output_dir")
        assert str(err.value) == f"output_dir '{path}' {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["file"] + (["ro"] if os.geteuid() != 0 else [])
    )


def test_a_new_run_refuses_a_used_folder_unless_told_to_overwrite(tmp_path):
    assert prepare_fresh_run(tmp_path, ["metrics.jsonl"], overwrite=False) == []
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    (tmp_path / "checkpoint-000001").mkdir()
    (tmp_path / ".checkpoint-000002.partial").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    markers, leftovers = ["metrics.jsonl", "checkpoint-*"], [".checkpoint-*.partial"]
    with pytest.raises(OutputDirError, match="already holds a run .*; resume it, or choose"):
        prepare_fresh_run(tmp_path, markers, overwrite=False, hint="resume it, ")
    assert (tmp_path / "metrics.jsonl").exists()
    removed = prepare_fresh_run(tmp_path, markers, overwrite=True, also_remove=leftovers)
    assert sorted(p.name for p in removed) == [
        ".checkpoint-000002.partial",
        "checkpoint-000001",
        "metrics.jsonl",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # not the run's: kept


@pytest.mark.parametrize(
    ("env", "num_processes", "has_gpu", "message"),
    [
        ({"WORLD_SIZE": "2"}, 1, False, "add --cpu true to the script's arguments"),
        ({"WORLD_SIZE": "8"}, 1, True, "at most as many processes as GPUs, or add --cpu true"),
        ({"WORLD_SIZE": "2"}, 2, False, None),  # one group of two: fine
        ({}, 1, False, None),  # not launched by a launcher
        ({"WORLD_SIZE": "x"}, 1, False, None),  # not a launcher we know
    ],
)
def test_processes_that_do_not_form_one_group_are_stopped(env, num_processes, has_gpu, message):
    if message is None:
        check_process_group(num_processes, env=env, has_gpu=has_gpu)
        return
    with pytest.raises(ProcessGroupError) as err:
        check_process_group(num_processes, env=env, has_gpu=has_gpu)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert f"started {env['WORLD_SIZE']} processes" in text and "group of 1" in text


def test_the_stages_can_name_their_own_cpu_flag():
    with pytest.raises(ProcessGroupError, match="add --use_cpu true"):
        check_process_group(1, env={"WORLD_SIZE": "2"}, has_gpu=False, cpu_flag="--use_cpu true")
