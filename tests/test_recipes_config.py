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
def test_shipped_configs_parse(path, stage_outputs):
    cls = ARGS_BY_PREFIX[next(k for k in ARGS_BY_PREFIX if path.name.startswith(k))]
    extra = {RewardModelArgs: ["--sft_path", "x"], EvalArgs: ["--model_path", "x"]}.get(cls, [])
    cfg = parse_recipe_args(cls, ["--config", str(path), *extra])
    assert isinstance(cfg, cls)


def test_cli_overrides_yaml(tmp_path):
    path = _write(tmp_path, "max_steps: 11\nlearning_rate: 0.01\n")
    cfg = parse_recipe_args(SFTArgs, ["--config", path, "--max_steps", "7"])
    assert cfg.max_steps == 7 and cfg.learning_rate == 0.01 and cfg.task == "sentiment"


def test_sft_num_steps_is_a_deprecated_alias_of_max_steps(tmp_path):
    """``max_steps`` counts optimizer steps, as PPOConfig's does; the old name still works
    from a YAML file, a flag and Python, each with a one-line notice."""
    with pytest.warns(FutureWarning, match="'num_steps' is deprecated; use 'max_steps'"):
        assert parse_recipe_args(SFTArgs, ["--config", _write(tmp_path, "num_steps: 11\n")]) == (
            SFTArgs(max_steps=11)
        )
    with pytest.warns(FutureWarning, match="--num_steps is deprecated; use --max_steps"):
        assert parse_recipe_args(SFTArgs, ["--num_steps", "7"]).max_steps == 7
    with pytest.warns(FutureWarning, match="'num_steps' is deprecated"):
        assert SFTArgs(num_steps=5).max_steps == 5
    with pytest.raises(ConfigError, match="'num_steps' and 'max_steps' are the same setting"):
        SFTArgs(num_steps=5, max_steps=6)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("max_step: 5\n", r"unknown key\(s\) \['max_step'\]"),
        ("learning_rate: fast\n", "learning_rate='fast' is invalid; expected a float"),
        (
            "task: poetry\n",
            "task='poetry' is invalid; expected one of \\['sentiment', 'arithmetic', 'chat_arithmetic', 'dataset'\\]",
        ),
        ("max_steps: 0\n", "max_steps=0 must be >= 1"),
        ("use_cpu: [1]\n", "use_cpu=\\[1\\] is invalid; expected a bool"),
        ("task: dataset\n", "dataset_name=None must be set for task 'dataset'"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_bad_sft_yaml_fails_with_a_clear_message(tmp_path, yaml_text, message):
    with pytest.raises(ConfigError, match=message):
        parse_recipe_args(SFTArgs, ["--config", _write(tmp_path, yaml_text)])


def _one_error_line(capsys) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ")
    return line


@pytest.mark.parametrize("recipe", ["sft", "reward_model", "ppo", "evaluate"])
def test_every_recipe_exits_2_with_one_line_before_loading(recipe, tmp_path, monkeypatch, capsys):
    _forbid_training(monkeypatch)
    monkeypatch.setattr("rlhf_pg.stages.ppo.run_ppo", lambda *a: pytest.fail("PPO ran"))
    monkeypatch.setattr(
        "rlhf_pg.stages.evaluate.run_evaluation", lambda *a: pytest.fail("evaluation ran")
    )
    main = runpy.run_path(str(RECIPES / f"{recipe}.py"))["main"]
    assert main(["--config", _write(tmp_path, "n_layers: 2\n")]) == 2
    assert "unknown key(s) ['n_layers']" in _one_error_line(capsys)
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in _one_error_line(capsys)
    assert main(["--seed", "one"]) == 2  # a bad flag value: no argparse usage dump
    assert "invalid int value: 'one'" in _one_error_line(capsys)


@pytest.mark.parametrize(
    ("recipe", "argv", "field", "stage"),
    [
        ("ppo", ["--config", "ppo_sentiment.yaml"], "model_name_or_path='runs/sft_sentiment'", "SFT"),
        ("ppo", ["--config", "ppo_sentiment.yaml", "--model_name_or_path", "."],
         "reward_model_path='runs/rm_sentiment'", "reward-model"),
        ("reward_model", ["--sft_path", "runs/nothing"], "sft_path='runs/nothing'", "SFT"),
        ("evaluate", ["--model_path", "./no/such/policy"], "model_path='./no/such/policy'", "stage"),
    ],
)  # fmt: skip
def test_a_missing_stage_output_is_named_with_the_stage_that_makes_it(
    recipe, argv, field, stage, tmp_path, monkeypatch, capsys
):
    """Running PPO before SFT: one line naming the path and the stage, not minutes of hub
    retries and a traceback."""
    _forbid_training(monkeypatch)
    monkeypatch.chdir(tmp_path)
    argv = [str(RECIPES / "configs" / a) if a.endswith(".yaml") else a for a in argv]
    main = runpy.run_path(str(RECIPES / f"{recipe}.py"))["main"]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert field in line and "does not exist; it is made by" in line and stage in line


def test_recipe_range_errors_are_one_line(tmp_path, monkeypatch, capsys):
    _forbid_training(monkeypatch)
    rm_main = runpy.run_path(str(RECIPES / "reward_model.py"))["main"]
    assert rm_main(["--config", _write(tmp_path, "temperature: -1.0\nsft_path: x\n")]) == 2
    assert "temperature=-1.0 must be > 0" in _one_error_line(capsys)


def test_bad_cli_value_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"command line: .*invalid float value: 'fast'"):
        parse_recipe_args(SFTArgs, ["--learning_rate", "fast"])


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict(SFTArgs, {"lr": 1.0})
    assert config_from_dict(SFTArgs, {"max_steps": 3}).max_steps == 3
    with pytest.raises(ConfigError, match="batch_size='8' is invalid; expected an int"):
        config_from_dict(SFTArgs, {"batch_size": "8"})


def test_cache_key_follows_results_not_locations(tmp_path):
    a = SFTArgs(cache_dir=str(tmp_path), max_steps=10)
    assert sft_output_dir(a) == sft_output_dir(
        SFTArgs(cache_dir=str(tmp_path), max_steps=10, progress=False)
    )
    assert sft_output_dir(a) != sft_output_dir(SFTArgs(cache_dir=str(tmp_path), max_steps=11))
    assert sft_output_dir(a).parent == tmp_path


def test_missing_text_column_names_the_column(tmp_path):
    data = tmp_path / "reviews.jsonl"
    data.write_text("\n".join(json.dumps({"review": "good film"}) for _ in range(4)))
    cfg = SFTArgs(task="dataset", dataset_name=str(data), output_dir=str(tmp_path / "out"))
    with pytest.raises(
        ValueError, match=r"no column 'text' \(text_column\), 'messages'.*it has \['review'\]"
    ):
        train_sft(cfg)


def test_missing_preference_columns_names_them(tmp_path):
    data = tmp_path / "prefs.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": "a", "chosen": "b"}) for _ in range(4)))
    cfg = RewardModelArgs(preference_dataset=str(data), output_dir=str(tmp_path / "rm"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['rejected'\]"):
        train_reward_model(cfg)


def test_stage_input_errors_are_one_line_with_exit_2(tmp_path, monkeypatch, capsys):
    """Errors found once the stage starts (not in the YAML) still reach the user as one line."""
    sft_main = runpy.run_path(str(RECIPES / "sft.py"))["main"]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    assert sft_main(["--output_dir", str(blocker / "sft"), "--max_steps", "1"]) == 2
    assert "is a file" in _one_error_line(capsys) and blocker.read_text() == "not a folder\n"
    data = tmp_path / "reviews.jsonl"
    data.write_text('{"review": "a good film"}\n')
    argv = ["--task", "dataset", "--dataset_name", str(data), "--output_dir", str(tmp_path / "o")]
    assert sft_main(argv) == 2
    line = _one_error_line(capsys)
    assert "no column 'text' (text_column)" in line and "review" in line
