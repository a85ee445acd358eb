"""Torch's thread count: a flag wins over the environment, the environment over the
default, and the default does not oversubscribe (physical cores this process may use)."""

from __future__ import annotations

import os

import psutil
import pytest
import torch

from rlhf_pg.cli import _parser, demo_config
from rlhf_pg.cli import main as cli_main
from rlhf_pg.utils.config import ConfigError
from rlhf_pg.utils.threads import default_threads, resolve_threads, set_torch_threads


def test_default_is_the_physical_cores_this_process_may_use(monkeypatch):
    allowed = len(os.sched_getaffinity(0))
    assert default_threads() == min(psutil.cpu_count(logical=False), allowed)
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8 if not logical else 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert default_threads() == 3  # a taskset / container limit caps it
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)))
    assert default_threads() == 8  # hyper-threads do not count


def test_environment_wins_over_the_default_and_a_request_over_both(monkeypatch):
    monkeypatch.setattr("rlhf_pg.utils.threads.default_threads", lambda: 6)
    assert resolve_threads(0, env={}) == (6, "physical cores available")
    assert resolve_threads(0, env={"OMP_NUM_THREADS": "3"}) == (3, "OMP_NUM_THREADS")
    assert resolve_threads(0, env={"OMP_NUM_THREADS": "4,2"}) == (4, "OMP_NUM_THREADS")
    assert resolve_threads(None, env={"OMP_NUM_THREADS": " "}) == (6, "physical cores available")
    assert resolve_threads(1, env={"OMP_NUM_THREADS": "3"}) == (1, "asked for")


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_environment_value_is_one_line_naming_it(value):
    with pytest.raises(ConfigError, match=f"OMP_NUM_THREADS='{value}' is not a positive integer"):
        resolve_threads(0, env={"OMP_NUM_THREADS": value})


def test_set_torch_threads_hands_the_count_to_torch():
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(None, env={"OMP_NUM_THREADS": "1"}) == (1, "OMP_NUM_THREADS")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_demo_flag_wins_over_config_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    config = tmp_path / "demo.yaml"
    config.write_text("num_threads: 2\n")
    from_flag = demo_config(
        _parser().parse_args(["demo", "--config", str(config), "--threads", "1"])
    )
    assert from_flag.num_threads == 1
    assert demo_config(_parser().parse_args(["demo", "--config", str(config)])).num_threads == 2
    unset = demo_config(_parser().parse_args(["demo"])).num_threads
    assert unset == 0 and resolve_threads(unset) == (3, "OMP_NUM_THREADS")


@pytest.mark.parametrize("flag", ["0", "-1", "many"])
def test_demo_rejects_a_bad_threads_flag_with_exit_2(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["demo", "--threads", flag])
    assert exit_info.value.code == 2
    assert f"'{flag}' is not a positive integer" in capsys.readouterr().err


def test_demo_rejects_a_bad_environment_before_any_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert cli_main(["demo", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "OMP_NUM_THREADS='lots'" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("package", ["rlhf_pg", "classic_control"])
@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_the_package_asks_openmp_for_passive_waiting_before_torch_loads(
    package, given, expected
):
    """In a fresh interpreter the policy is set before torch is imported (the OpenMP runtime
    reads it only then), and a user's own choice is kept."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    probe = (
        "import builtins, os\n"
        "seen = {}\n"
        "real = builtins.__import__\n"
        "def spy(name, *a, **k):\n"
        "    if name == 'torch' and 'policy' not in seen:\n"
        "        seen['policy'] = os.environ.get('OMP_WAIT_POLICY')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = spy\n"
        f"import {package}\n"
        "print(seen.get('policy'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == expected
