"""The bad-input probe table of issue 17, one table per entry point (train, eval, compare,
report): every probe ends with exactly one ``error:`` line naming the bad value, exit
code 2, no traceback, and no file that was on disk before is changed, created or removed.

The probes run in-process (``main(argv)``): each must fail before any training starts.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from classic_control import rundir
from classic_control.__main__ import main
from classic_control.envs import probe_env
from classic_control.networks import ActorCritic
from classic_control.settings import resolve
from classic_control.trainer import Trainer

# a probe that wrongly passed would train only this much (the probe's flags come after)
TINY = ["--steps", "32", "--eval-episodes", "1", "--no-progress"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny PPO run (config, checkpoint, models, eval.json)."""
    out = tmp_path_factory.mktemp("runs") / "ppo"
    argv = ["train", *TINY, "--num-envs", "1", "--num-steps", "32", "--out", str(out)]
    assert main(argv) == 0
    return out


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under ``root``: an empty folder left by a
    failed command counts as a change too."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in root.rglob("*")
    }


def _probe(capsys, root: Path, argv: list[str], named: str) -> None:
    """Run one probe in ``root`` (the folder every path of the probe lives in)."""
    before = _snapshot(root)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert named in lines[0], (named, lines[0])
    assert _snapshot(root) == before  # nothing on disk changed, nothing left behind


# --- train ----------------------------------------------------------------------------------
def _yaml(text: str) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        (d / "c.yaml").write_bytes(text.encode("utf-8", "surrogateescape"))
        return ["--config", str(d / "c.yaml"), "--out", str(d / "r")]

    return make


def _file(d: Path) -> Path:
    (d / "afile").write_text("not a folder")
    return d / "afile"


def _resume_with(make_checkpoint: Callable[[Path], None]) -> Callable[[Path, Path], list[str]]:
    def make(d: Path, run: Path) -> list[str]:
        shutil.copytree(run, d / "r")
        make_checkpoint(d / "r" / rundir.CHECKPOINT)
        return ["--resume", str(d / "r")]

    return make


def _other_algo_checkpoint(path: Path) -> None:
    cfg, _ = resolve("a2c", "CartPole-v1", {"num_envs": 1, "eval_episodes": 1})
    trainer = Trainer(cfg, path.parent)  # an a2c checkpoint, as another run would write it
    trainer.save_checkpoint(0)
    trainer.close()


TRAIN = {
    "lr inf": (lambda d: ["--lr", "inf", "--out", str(d / "r")], "inf"),
    "learning-rate inf": (lambda d: ["--learning-rate", "inf", "--out", str(d / "r")], "inf"),
    "learning-rate text": (lambda d: ["--learning-rate", "fast"], "'fast'"),
    "num-envs float": (lambda d: ["--num-envs", "2.5"], "'2.5'"),
    "yaml lr text": (_yaml("learning_rate: fast\n"), "'fast'"),
    "yaml num_envs float": (_yaml("num_envs: 2.5\n"), "num_envs=2.5"),
    "yaml hidden_sizes int": (_yaml("hidden_sizes: 64\n"), "hidden_sizes=64"),
    "yaml anneal_lr maybe": (_yaml('anneal_lr: "maybe"\n'), "'maybe'"),
    "yaml syntax": (_yaml("learning_rate: [0.1\n"), "not valid YAML at line 2"),
    "yaml list": (_yaml("- 1\n- 2\n"), "expected a mapping"),
    "yaml missing": (lambda d: ["--config", str(d / "none.yaml")], "none.yaml"),
    "yaml binary": (_yaml("\udcff\udcfe"), "not a UTF-8 text file"),
    "yaml other env": (_yaml("env_id: Acrobot-v1\n"), "'Acrobot-v1'"),
    "yaml seed negative": (_yaml("seed: -1\n"), "-1"),
    "seed too large": (lambda d: ["--seed", str(2**32), "--out", str(d / "r")], str(2**32)),
    "out is a file": (lambda d: ["--out", str(_file(d))], "afile"),
    "out under a file": (lambda d: ["--out", str(_file(d) / "sub")], "afile"),
    "out not writable": (lambda d: ["--out", "/proc/classic-control-run"], "/proc/classic"),
    "steps zero": (lambda d: ["--steps", "0", "--out", str(d / "r")], "0"),
    "env unknown": (lambda d: ["--env", "CartPol-v1", "--out", str(d / "r")], "'CartPol-v1'"),
}


@pytest.mark.parametrize("name", TRAIN)
def test_train_bad_input(capsys, tmp_path, name):
    make, named = TRAIN[name]
    _probe(capsys, tmp_path, ["train", *TINY, *make(tmp_path)], named)


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


RESUME = {
    "empty checkpoint": (_resume_with(lambda p: p.write_bytes(b"")), "checkpoint.pt"),
    "truncated checkpoint": (_resume_with(_truncated), "checkpoint.pt"),
    "foreign checkpoint": (_resume_with(lambda p: torch.save({"a": 1}, p)), "checkpoint.pt"),
    "other algorithm": (_resume_with(_other_algo_checkpoint), "algo=a2c"),
    "no checkpoint": (_resume_with(lambda p: p.unlink()), "checkpoint.pt"),
}


@pytest.mark.parametrize("name", RESUME)
def test_resume_bad_input(capsys, tmp_path, finished_run, name):
    make, named = RESUME[name]
    _probe(capsys, tmp_path, ["train", *make(tmp_path, finished_run), "--no-progress"], named)


# --- eval -----------------------------------------------------------------------------------
def _with_model(change: Callable[[Path], None]) -> Callable[[Path, Path], list[str]]:
    def make(d: Path, run: Path) -> list[str]:
        shutil.copytree(run, d / "r")
        change(d / "r" / rundir.MODEL_FINAL)
        return [str(d / "r")]

    return make


def _other_network(path: Path) -> None:
    cfg, _ = resolve("ppo", "CartPole-v1", {"hidden_sizes": [8]})
    agent = ActorCritic(probe_env("CartPole-v1"), cfg)
    rundir.save_model(path, agent, {"mean": [0.0] * 4, "var": [1.0] * 4}, {})


def _video(target: Callable[[Path], str]) -> Callable[[Path, Path], list[str]]:
    def make(d: Path, run: Path) -> list[str]:
        shutil.copytree(run, d / "r")
        return [str(d / "r"), "--video", target(d)]

    return make


EVAL = {
    "corrupt model": (_with_model(lambda p: p.write_bytes(b"\x00" * 100)), "model_final"),
    "truncated model": (_with_model(_truncated), "model_final"),
    "other network": (_with_model(_other_network), "model_final"),
    "no model": (_with_model(lambda p: p.unlink()), "model_final"),
    "video under a file": (_video(lambda d: str(_file(d) / "v.gif")), "afile"),
    "video folder missing": (_video(lambda d: str(d / "none" / "v.gif")), "none"),
    "video not writable": (_video(lambda d: "/proc/classic-control.gif"), "/proc/classic"),
    "video is a folder": (_video(lambda d: str(d)), "is a folder"),
    "episodes zero": (lambda d, run: [str(shutil.copytree(run, d / "r")), "--episodes", "0"], "0"),
    "not a run": (lambda d, run: [str(d)], "is not a classic_control run"),
}


@pytest.mark.parametrize("name", EVAL)
def test_eval_bad_input(capsys, tmp_path, finished_run, name):
    make, named = EVAL[name]
    _probe(capsys, tmp_path, ["eval", *make(tmp_path, finished_run)], named)


# --- compare and report ---------------------------------------------------------------------
def _manifest(text: str) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        (d / "res").mkdir()
        (d / "res" / "sweep.json").write_text(text)
        return ["--out", str(d / "res")]

    return make


COMPARE = {
    "algo unknown": (lambda d: ["--algos", "sarsa"], "'sarsa'"),
    "env unknown": (lambda d: ["--envs", "CartPol-v1"], "'CartPol-v1'"),
    "seeds zero": (lambda d: ["--seeds", "0"], "0"),
    "steps text": (lambda d: ["--steps", "many"], "'many'"),
    "jobs zero": (lambda d: ["--jobs", "0"], "0"),
    "out is a file": (lambda d: ["--out", str(_file(d))], "afile"),
    "out under a file": (lambda d: ["--out", str(_file(d) / "res")], "afile"),
    "out not writable": (lambda d: ["--out", "/proc/classic-control-res"], "/proc/classic"),
    "damaged manifest": (_manifest("{not json"), "sweep.json"),
    "other protocol": (_manifest('{"steps": 5, "eval_every": 5, "eval_episodes": 1}'), "steps=5"),
}


@pytest.mark.parametrize("name", COMPARE)
def test_compare_bad_input(capsys, tmp_path, name):
    make, named = COMPARE[name]
    argv = ["compare", "--algos", "a2c", "--seeds", "1", "--steps", "64", "--no-progress"]
    argv += ["--out", str(tmp_path / "default")]  # argparse keeps the last --out
    _probe(capsys, tmp_path, [*argv, *make(tmp_path)], named)


def _records(text: str) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        folder = d / "res" / "records" / "CartPole-v1" / "a2c"
        folder.mkdir(parents=True)
        (folder / "seed0.json").write_text(text)
        return [str(d / "res")]

    return make


REPORT = {
    "missing folder": (lambda d: [str(d / "none")], "none"),
    "a file": (lambda d: [str(_file(d))], "afile"),
    "no records": (lambda d: [str(d)], "records/"),
    "damaged record": (_records("{not json"), "seed0.json"),
    "foreign record": (_records('{"algo": "a2c"}'), "seed0.json"),
    "out is a file": (lambda d: [*_records("{}")(d), "--out", str(_file(d))], "afile"),
}


@pytest.mark.parametrize("name", REPORT)
def test_report_bad_input(capsys, tmp_path, name):
    make, named = REPORT[name]
    _probe(capsys, tmp_path, ["report", *make(tmp_path)], named)
