"""Recipe configs: YAML + CLI overrides, and clear errors before any model is loaded."""

import json
import runpy
from pathlib import Path

import pytest

import rlhf_pg.stages.reward_model
import rlhf_pg.stages.sft
from rlhf_pg.stages.evaluate import EvalArgs
from rlhf_pg.stages.reward_model import RewardModelArgs, train_reward_model
from rlhf_pg.stages.sft import SFTArgs, sft_output_dir, train_sft
from rlhf_pg.utils.config import ConfigError, config_from_dict, parse_recipe_args

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
ARGS_BY_PREFIX = {"sft_": SFTArgs, "rm_": RewardModelArgs, "eval_": EvalArgs}


def _write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return str(path)


def _forbid_training(monkeypatch):
    def boom(cfg):
        raise AssertionError("training started although the config is invalid")

    monkeypatch.setattr(rlhf_pg.stages.sft, "train_sft", boom)
    monkeypatch.setattr(rlhf_pg.stages.reward_model, "train_reward_model", boom)


@pytest.mark.parametrize(
    "path",
    sorted(
        p for p in (RECIPES / "configs").glob("*.yaml") if p.name.startswith(tuple(ARGS_BY_PREFIX))
    ),
)
def test_shipped_configs_parse(path):
    cls = ARGS_BY_PREFIX[next(k for k in ARGS_BY_PREFIX if path.name.startswith(k))]
    extra = {RewardModelArgs: ["--sft_path", "x"], EvalArgs: ["--model_path", "x"]}.get(cls, [])
    cfg = parse_recipe_args(cls, ["--config", str(path), *extra])
    assert isinstance(cfg, cls)


def test_cli_overrides_yaml(tmp_path):
    path = _write(tmp_path, "num_steps: 11\nlearning_rate: 0.01\n")
    cfg = parse_recipe_args(SFTArgs, ["--config", path, "--num_steps", "7"])
    assert cfg.num_steps == 7 and cfg.learning_rate == 0.01 and cfg.task == "sentiment"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("num_step: 5\n", r"unknown key\(s\) \['num_step'\]"),
        ("learning_rate: fast\n", "learning_rate='fast' is invalid; expected a float"),
        (
            "task: poetry\n",
            "task='poetry' is invalid; expected one of \\['sentiment', 'arithmetic', 'dataset'\\]",
        ),
        ("num_steps: 0\n", "num_steps=0 must be >= 1"),
        ("use_cpu: [1]\n", "use_cpu=\\[1\\] is invalid; expected a bool"),
        ("task: dataset\n", "dataset_name=None must be set for task 'dataset'"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_bad_sft_yaml_fails_with_a_clear_message(tmp_path, yaml_text, message):
    with pytest.raises(ConfigError, match=message):
        parse_recipe_args(SFTArgs, ["--config", _write(tmp_path, yaml_text)])


def test_recipe_scripts_exit_2_before_training(tmp_path, monkeypatch, capsys):
    _forbid_training(monkeypatch)
    sft_main = runpy.run_path(str(RECIPES / "sft.py"))["main"]
    rm_main = runpy.run_path(str(RECIPES / "reward_model.py"))["main"]
    assert sft_main(["--config", _write(tmp_path, "n_layers: 2\n")]) == 2
    assert "unknown key(s) ['n_layers']" in capsys.readouterr().err
    assert rm_main(["--config", _write(tmp_path, "temperature: -1.0\nsft_path: x\n")]) == 2
    assert "temperature=-1.0 must be > 0" in capsys.readouterr().err
    assert rm_main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_bad_cli_value_is_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_recipe_args(SFTArgs, ["--learning_rate", "fast"])
    assert exc.value.code == 2
    assert "invalid float value: 'fast'" in capsys.readouterr().err


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict(SFTArgs, {"lr": 1.0})
    assert config_from_dict(SFTArgs, {"num_steps": 3}).num_steps == 3


def test_cache_key_follows_results_not_locations(tmp_path):
    a = SFTArgs(cache_dir=str(tmp_path), num_steps=10)
    assert sft_output_dir(a) == sft_output_dir(
        SFTArgs(cache_dir=str(tmp_path), num_steps=10, progress=False)
    )
    assert sft_output_dir(a) != sft_output_dir(SFTArgs(cache_dir=str(tmp_path), num_steps=11))
    assert sft_output_dir(a).parent == tmp_path


def test_missing_text_column_names_the_column(tmp_path):
    data = tmp_path / "reviews.jsonl"
    data.write_text("\n".join(json.dumps({"review": "good film"}) for _ in range(4)))
    cfg = SFTArgs(task="dataset", dataset_name=str(data), output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['text'\]; it has \['review'\]"):
        train_sft(cfg)


def test_missing_preference_columns_names_them(tmp_path):
    data = tmp_path / "prefs.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": "a", "chosen": "b"}) for _ in range(4)))
    cfg = RewardModelArgs(preference_dataset=str(data), output_dir=str(tmp_path / "rm"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['rejected'\]"):
        train_reward_model(cfg)
