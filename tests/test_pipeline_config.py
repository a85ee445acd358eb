"""PPO recipe configs: shipped YAMLs parse; an unknown key or a bad value fails with one clear
line before any model is loaded."""

import runpy
from pathlib import Path

import pytest

import rlhf_pg.stages.ppo
from rlhf_pg.cli import main as cli_main
from rlhf_pg.stages.ppo_args import parse_ppo_args
from rlhf_pg.utils.config import ConfigError

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
PPO_CONFIGS = sorted(
    p
    for p in (RECIPES / "configs").glob("*.yaml")
    if p.stem.split("_")[0] in ("ppo", "rloo", "grpo")
)
GOOD = "task: sentiment\nmodel_name_or_path: somewhere\nreward_fn: vader\n"


@pytest.fixture(autouse=True)
def _no_model_loading(monkeypatch):
    """Any attempt to load a model or start training fails the test."""

    def boom(*args, **kwargs):
        raise AssertionError("a model was loaded although the config is invalid")

    monkeypatch.setattr(rlhf_pg.stages.ppo, "load_policy", boom)
    monkeypatch.setattr(rlhf_pg.stages.ppo, "build_reward", boom)


def _yaml(tmp_path, text):
    path = tmp_path / "ppo.yaml"
    path.write_text(text)
    return str(path)


def test_ppo_configs_ship_for_every_task_and_estimator():
    assert {p.stem for p in PPO_CONFIGS} == {
        "ppo_sentiment",
        "ppo_arithmetic",
        "rloo_arithmetic",
        "grpo_arithmetic",
        "ppo_gpt2_imdb",
    }


@pytest.mark.parametrize("path", PPO_CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_parse_and_cli_overrides_win(path):
    args, config = parse_ppo_args(["--config", str(path), "--seed", "7", "--max_steps", "3"])
    assert config.seed == 7 and config.max_steps == 3
    assert args.reward_model_path is not None or args.reward_fn != "none"
    if path.stem.startswith(("rloo", "grpo")):
        assert config.estimator == path.stem.split("_")[0] and config.samples_per_prompt >= 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("bogus_key: 1\n", r"unknown key\(s\) \['bogus_key'\]"),
        ("learning_rate: fast\n", r"learning_rate='fast' is invalid; expected a float"),
        ("estimator: ppo2\n", r"estimator='ppo2' is not valid; choose one of ppo, reinforce"),
        ("kl_coef: -0.1\n", r"kl_coef must be >= 0"),
        ("task: poetry\n", r"task='poetry' is invalid; expected one of \['sentiment'"),
        ("estimator: grpo\nsamples_per_prompt: 1\n", r"needs samples_per_prompt >= 2"),
        (
            "reward_fn: none\n",
            r"reward_fn='none' with no reward_model_path: give at least one reward",
        ),
    ],
)
def test_bad_yaml_fails_clearly_before_loading(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        parse_ppo_args(["--config", _yaml(tmp_path, GOOD + extra)])


def test_recipe_script_exits_with_the_message(tmp_path):
    main = runpy.run_path(str(RECIPES / "ppo.py"))["main"]
    with pytest.raises(SystemExit, match=r"error: .*unknown key\(s\) \['bogus'\]"):
        main(["--config", _yaml(tmp_path, GOOD + "bogus: 1\n")])


def test_bad_cli_value_is_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_ppo_args(["--config", _yaml(tmp_path, GOOD), "--learning_rate", "abc"])
    assert "invalid float value: 'abc'" in capsys.readouterr().err


def test_demo_rejects_a_bad_config_before_any_stage(tmp_path, capsys, monkeypatch):
    import rlhf_pg.demo.pipeline

    monkeypatch.setattr(rlhf_pg.demo.pipeline, "run_demo", lambda cfg: pytest.fail("demo ran"))
    bad = tmp_path / "demo.yaml"
    bad.write_text("ppo_steps: many\n")
    assert cli_main(["demo", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "ppo_steps='many' is invalid" in capsys.readouterr().err
    bad.write_text("sft_stepz: 3\n")
    assert cli_main(["demo", "--config", str(bad)]) == 2
    assert "unknown key(s) ['sft_stepz']" in capsys.readouterr().err
