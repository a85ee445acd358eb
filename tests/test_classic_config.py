"""Settings: the LM side's names, old names as deprecated aliases on every path, each
algorithm's own checks, and imports that only go downward."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

import pytest
import yaml

import classic_control
from classic_control.__main__ import main
from classic_control.algos import REGISTRY
from classic_control.config import Config, ConfigError
from classic_control.metrics import LEGACY_METRICS, is_timing
from classic_control.settings import resolve
from classic_control.trainer import Trainer

OLD_NAMES = {"lr": 0.002, "clip_coef": 0.3, "vf_clip_coef": 0.4, "ent_coef": 0.01}
NEW_NAMES = {"learning_rate": 0.002, "clip_eps": 0.3, "clip_eps_value": 0.4, "entropy_coef": 0.01}


def test_python_keywords_accept_old_names_with_one_notice_each():
    with pytest.warns(FutureWarning) as caught:
        cfg = Config(**OLD_NAMES)
    assert {k: getattr(cfg, k) for k in NEW_NAMES} == NEW_NAMES
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 4 and all("\n" not in m and "deprecated" in m for m in messages)
    assert "field 'lr' is deprecated; use 'learning_rate'" in " ".join(messages)
    with pytest.raises(ConfigError, match="same setting"):
        Config(lr=0.1, learning_rate=0.2)


def test_old_names_in_a_config_file_and_overrides_layer_like_new_ones(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("lr: 0.005\nent_coef: 0.02\n")
    with pytest.warns(FutureWarning) as caught:
        cfg, preset = resolve("ppo", "CartPole-v1", {}, config_file=path)
    assert "old.yaml: Config field 'lr' is deprecated" in str(caught[0].message)
    assert preset == "ppo_CartPole-v1.yaml"
    assert cfg.learning_rate == 0.005 and cfg.entropy_coef == 0.02
    # an old name in a later layer overrides the preset's new name (and the file's)
    with pytest.warns(FutureWarning):
        cfg, _ = resolve("ppo", "CartPole-v1", {"lr": 0.007}, config_file=path)
    assert cfg.learning_rate == 0.007 and cfg.entropy_coef == 0.02
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bundled presets use the new names
        assert resolve("ppo", "CartPole-v1", {})[0].learning_rate == 0.0025


def test_old_cli_flag_is_one_warning_line(capsys, tmp_path):
    assert main(["train", "--lr", "-1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: flag --lr is deprecated; use --learning-rate",
        "error: learning_rate must be > 0, got -1.0",
    ]
    assert main(["train", "--ent-coef", "0.1", "--entropy-coef", "0.2"]) == 2
    assert "same setting" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_each_algorithm_checks_only_its_own_fields():
    resolve("a2c", "CartPole-v1", {"clip_eps": 0.0})  # a2c has no clip: not its business
    with pytest.raises(ConfigError, match="clip_eps must be > 0, got 0.0"):
        resolve("ppo", "CartPole-v1", {"clip_eps": 0.0})
    resolve("ppo", "CartPole-v1", {"num_workers": 0})
    with pytest.raises(ConfigError, match="num_workers must be >= 1 for a3c"):
        resolve("a3c", "CartPole-v1", {"num_workers": 0})
    with pytest.raises(ConfigError, match="episodes_per_batch must be > 0"):
        resolve("reinforce", "CartPole-v1", {"episodes_per_batch": 0})
    with pytest.raises(ConfigError, match="expected a float"):
        Config(gamma="high")  # generic checks: the dataclass's own


def test_every_algorithm_builds_its_collector_one_way(tmp_path):
    kinds = {}
    for algo in REGISTRY:
        sizes = {"num_envs": 2, "num_steps": 8, "num_minibatches": 2}
        if algo == "actor_critic":  # one env, one step per update by definition
            sizes = {"num_envs": 1, "num_steps": 1}
        env_id = "Pendulum-v1" if algo in ("ddpg", "td3", "sac") else "CartPole-v1"
        cfg, _ = resolve(algo, env_id, sizes)
        trainer = Trainer(cfg, tmp_path / algo)
        try:
            c = trainer.collector
            assert all(callable(getattr(c, m)) for m in ("collect", "state_dict", "close"))
            assert c.stats.pop() == [] and c.obs_norm is not None
            kinds[algo] = type(c).__name__
        finally:
            trainer.close()
    assert kinds == {
        "ppo": "VectorCollector",
        "a2c": "VectorCollector",
        "trpo": "VectorCollector",
        "reinforce": "EpisodeCollector",
        "a3c": "WorkerPool",
        "ddpg": "ReplayCollector",
        "td3": "ReplayCollector",
        "sac": "ReplayCollector",
        "actor_critic": "VectorCollector",
        "ppo_kl": "VectorCollector",
    }


def _downward_imports() -> list[tuple[str, str]]:
    """(importer, imported) for each import inside classic_control that goes up a layer."""
    order = [
        "metrics config envs networks evaluate rollout lifetime offpolicy_networks replay tracking",
        "algos",
        "settings flags",
        "rundir",
        "trainer",
        "compare",
        "lab",
        "__main__",
    ]
    layer = {name: i for i, names in enumerate(order) for name in names.split()}
    root = Path(classic_control.__file__).parent
    wrong = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                depth = len(parts) - node.level  # index into parts of the package imported from
                target = (parts[:depth] + tuple((node.module or "").split(".")))[0]
                if not target:  # `from . import x` at the top level
                    target = node.names[0].name
                if target != parts[0] and layer[target] > layer[parts[0]]:
                    wrong.append((".".join(parts), target))
    return wrong


def test_imports_only_go_down_the_layers():
    assert _downward_imports() == []


@pytest.mark.slow
def test_a_run_saved_under_the_old_names_resumes_and_evaluates(tmp_path, capsys):
    small = {"total_steps": 1536, "num_envs": 4, "num_steps": 64, "num_minibatches": 2}
    small.update(update_epochs=2, eval_every=512, eval_episodes=2, checkpoint_every=512)
    cfg, _ = resolve("ppo", "CartPole-v1", small)
    for name, stop in (("full", None), ("cut", 3)):
        trainer = Trainer(cfg, tmp_path / name)
        trainer.train(show_progress=False, stop_after=stop)
        trainer.close()
    # make the cut run look like one written before the renaming
    cut = tmp_path / "cut"
    saved = yaml.safe_load((cut / "config.yaml").read_text())
    new_to_old = {new: old for old, new in Config.ALIASES.items()}
    old_cfg = {new_to_old.get(k, k): v for k, v in saved.items()}
    (cut / "config.yaml").write_text(yaml.safe_dump(old_cfg))
    renames = {new: old for old, new in LEGACY_METRICS.items() if old != "train_time_s"}
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").open()]
    old_rows = [{renames.get(k, k): v for k, v in r.items()} for r in rows]
    assert {"policy_loss", "entropy", "time", "train_return"} <= set(old_rows[0])
    (cut / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old_rows))

    assert main(["train", "--resume", str(cut), "--no-progress"]) == 0
    assert "warning: " in capsys.readouterr().err  # the old config names are flagged
    assert "learning_rate:" in (cut / "config.yaml").read_text()

    def learning(run: Path) -> list[dict]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        return [{k: v for k, v in r.items() if not is_timing(k)} for r in rows]

    assert learning(cut) == learning(tmp_path / "full")  # old rows renamed, new rows equal
    assert "train/episode_return" in (cut / "metrics.csv").read_text().splitlines()[0]
    (cut / "config.yaml").write_text(yaml.safe_dump(old_cfg))
    assert main(["eval", str(cut), "--episodes", "2"]) == 0
    assert json.loads((cut / "eval.json").read_text())["env_steps"] == 1536


def test_an_algorithm_with_the_old_collector_attribute_fails_loudly():
    from classic_control.algos.base import Algorithm
    from classic_control.rollout import EpisodeCollector

    with pytest.raises(TypeError, match="make_collector"):

        class Old(Algorithm):  # noqa: F841 - defining it is the test
            collector = EpisodeCollector
