"""Two processes (DDP on gloo, CPU) make the same update as one process on the same global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "lm_dist_script.py"
ROOT = Path(__file__).parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], out: Path) -> tuple[dict, dict]:
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        cmd + [str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_file(out / "weights.safetensors"), json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_two_processes_give_the_same_update_as_one(tmp_path):
    accelerate = Path(sys.executable).parent / "accelerate"
    one_w, one_m = _run([sys.executable, str(SCRIPT)], tmp_path / "one")
    two_w, two_m = _run(
        [
            str(accelerate),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(_free_port()),
            str(SCRIPT),
        ],
        tmp_path / "two",
    )
    assert set(one_w) == set(two_w)
    moved = 0.0
    for name in one_w:
        torch.testing.assert_close(two_w[name], one_w[name], atol=1e-5, rtol=1e-4, msg=name)
    for estimator in one_m:  # ppo (token-mean) and reinforce (seq-mean-token-sum)
        for key in ("score/mean", "loss/policy", "grad_norm", "kl/seq", "response/length"):
            assert two_m[estimator][key] == pytest.approx(one_m[estimator][key], abs=1e-5), key
        moved = max(moved, one_m[estimator]["grad_norm"])
    assert moved > 0.1  # the step did move the weights, so agreement is not trivial
    assert two_m["ppo"]["loss/value"] == pytest.approx(one_m["ppo"]["loss/value"], abs=1e-5)
    for run, m in (("one", one_m), ("two", two_m)):  # save + resume under one claim
        for estimator in m:
            assert m[estimator]["resumed_step"] == 1 and m[estimator]["resumed_same_weights"]
            lines = (tmp_path / run / estimator / "metrics.jsonl").read_text().splitlines()
            assert [json.loads(x)["step"] for x in lines] == [1]
            assert not (tmp_path / run / estimator / ".rlhf-pg.lock").exists()  # released
