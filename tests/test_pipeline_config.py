"""PPO recipe and demo configs: shipped YAMLs parse; an unknown key or a bad value fails with
one clear line before any model is loaded; the demo composes the recipe YAMLs."""

import runpy
from pathlib import Path

import pytest
import yaml

import rlhf_pg.stages.ppo
from rlhf_pg.cli import main as cli_main
from rlhf_pg.demo.pipeline import DemoConfig, ppo_args, rm_args, sft_args
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
        "ppo_chat_arithmetic",
        "rloo_chat_arithmetic",
        "grpo_chat_arithmetic",
        "ppo_gpt2_imdb",
    }


@pytest.mark.parametrize("path", PPO_CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_parse_and_cli_overrides_win(path, stage_outputs):
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


def test_recipe_script_exits_2_with_one_line(tmp_path, capsys):
    main = runpy.run_path(str(RECIPES / "ppo.py"))["main"]
    assert main(["--config", _yaml(tmp_path, GOOD + "bogus: 1\n")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "unknown key(s) ['bogus']" in err[0]
    # a value the trainer's config rejects, given as a flag: the same single line
    assert main(["--config", _yaml(tmp_path, GOOD), "--kl_coef", "-1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "kl_coef must be >= 0, got -1.0" in line


def test_bad_cli_value_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"invalid float value: 'abc'"):
        parse_ppo_args(["--config", _yaml(tmp_path, GOOD), "--learning_rate", "abc"])


def test_old_names_still_work_with_a_notice(tmp_path):
    with pytest.warns(FutureWarning, match="'ppo_epochs' is deprecated; use 'update_epochs'"):
        _, config = parse_ppo_args(["--config", _yaml(tmp_path, GOOD + "ppo_epochs: 3\n")])
    assert config.update_epochs == 3
    with pytest.warns(FutureWarning, match="--total_steps is deprecated; use --max_steps"):
        _, config = parse_ppo_args(["--config", _yaml(tmp_path, GOOD), "--total_steps", "9"])
    assert config.max_steps == 9


def test_demo_rejects_a_bad_config_before_any_stage(tmp_path, capsys, monkeypatch):
    import rlhf_pg.demo.pipeline

    monkeypatch.setattr(rlhf_pg.demo.pipeline, "run_demo", lambda cfg: pytest.fail("demo ran"))
    bad = tmp_path / "demo.yaml"
    cases = [
        ("ppo: {max_steps: many}\n", "max_steps='many' is invalid; expected an int"),
        ("sft_steps: 3\n", "unknown key(s) ['sft_steps']"),
        ("sft: {stepz: 3}\n", "DemoConfig.sft: unknown key(s) ['stepz'] for SFTArgs"),
        ("reward_model: {learning_rate: -1.0}\n", "learning_rate=-1.0 must be > 0"),
        ("ppo: {estimator: ppo2}\n", "estimator='ppo2' is not valid"),
        ("ppo: []\n", "ppo=[] is invalid; expected a dict"),
        (f"configs_dir: {tmp_path}\n", "the demo's recipe config"),
    ]
    for text, message in cases:
        bad.write_text(text)
        assert cli_main(["demo", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2, text
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("rlhf-pg: error: ") and message in line, (text, line)


def test_demo_stages_are_the_recipe_yamls_plus_run_level_settings(tmp_path):
    """The demo cannot drift from the recipes: every setting of the three sentiment YAMLs
    reaches the stage unchanged unless it is one of the demo's run-level settings."""
    cfg = DemoConfig(out=str(tmp_path / "demo"), seed=3, cache_dir=str(tmp_path / "cache"))
    configs = RECIPES / "configs"
    sft = sft_args(cfg)
    for key, value in yaml.safe_load((configs / "sft_sentiment.yaml").read_text()).items():
        assert getattr(sft, key) == (3 if key == "seed" else value), key
    assert sft.max_steps == 800 and sft.cache_dir == str(tmp_path / "cache")
    rm = rm_args(cfg, Path("sft-dir"))
    for key, value in yaml.safe_load((configs / "rm_sentiment.yaml").read_text()).items():
        assert getattr(rm, key) == (3 if key == "seed" else value), key
    assert rm.sft_path == "sft-dir"
    args, config = ppo_args(cfg, Path("sft-dir"), Path("rm-dir"))
    run_level = {
        "model_name_or_path": "sft-dir",
        "reward_model_path": "rm-dir",
        "seed": 3,
        "output_dir": str(tmp_path / "demo" / "ppo"),
    }
    for key, value in yaml.safe_load((configs / "ppo_sentiment.yaml").read_text()).items():
        got = getattr(args, key) if hasattr(args, key) else getattr(config, key)
        assert got == run_level.get(key, value), key
    # a per-stage override wins over both
    over = DemoConfig(seed=3, sft={"max_steps": 5, "seed": 9}, ppo={"kl_coef": 0.2})
    assert sft_args(over).max_steps == 5 and sft_args(over).seed == 9
    assert ppo_args(over, Path("s"), Path("r"))[1].kl_coef == 0.2
