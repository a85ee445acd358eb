"""Bad input to the off-policy probes under bench/: one line naming the value, exit 2, no work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("probe", ["offpolicy_cost_probe.py", "offpolicy_compile_probe.py"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["td3", "CartPole-v1"], "td3 needs continuous (Box) actions but CartPole-v1 has 2"),
        (["sac", "Nope-v0"], "unknown env id 'Nope-v0'"),
        (["ppo", "Pendulum-v1"], "invalid choice: 'ppo'"),
    ],
)
def test_bad_probe_input_exits_2_with_one_line(probe, args, message):
    cmd = [sys.executable, str(ROOT / "bench" / probe), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert message in last
    assert "Traceback" not in proc.stderr


def test_compile_probe_refuses_zero_rounds():
    cmd = [sys.executable, str(ROOT / "bench" / "offpolicy_compile_probe.py"), "td3",
           "Pendulum-v1", "--rounds", "0"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "--rounds must be >= 1, got 0" in proc.stderr
