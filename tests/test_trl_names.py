"""TRL's names in configs and on the command line: each one gives the same config as our own
name for the setting, silently (our old names warn), and the ones we cannot honour fail
with the reason. The references are the configs built from our names, and TRL's own
config classes (which names exist there)."""

import dataclasses
import warnings

import pytest
import trl
from transformers import TrainingArguments

from rlhf_pg.lm import PPOConfig
from rlhf_pg.stages.ppo_args import PPORecipeArgs, parse_ppo_args
from rlhf_pg.stages.reward_model import RewardModelArgs
from rlhf_pg.stages.sft import SFTArgs
from rlhf_pg.utils.config import ConfigError, config_from_dict, parse_recipe_args

# TRL's name -> (its value, our name's value); the two configs must be equal.
PPO_CASES = {
    "num_generations": ({"num_generations": 4}, {"samples_per_prompt": 4}),
    "max_completion_length": ({"max_completion_length": 9}, {"max_new_tokens": 9}),
    "beta": ({"beta": 0.04}, {"kl_coef": 0.04}),
    "epsilon": ({"epsilon": 0.3}, {"clip_eps": 0.3}),
    "epsilon_high": ({"epsilon_high": 0.28}, {"clip_eps_high": 0.28}),
    "num_iterations": ({"num_iterations": 2}, {"update_epochs": 2}),
    "save_steps": ({"save_steps": 5, "output_dir": "x"}, {"save_every": 5, "output_dir": "x"}),
    "use_peft": ({"use_peft": True}, {"use_lora": True}),
    "loss_type dr_grpo": ({"loss_type": "dr_grpo"}, {"loss_aggregation": "seq-mean-token-sum"}),
    "loss_type grpo": ({"loss_type": "grpo"}, {"loss_aggregation": "seq-mean-token-mean"}),
    "loss_type dapo": ({"loss_type": "dapo"}, {"loss_aggregation": "token-mean"}),
    "scale_rewards none": ({"scale_rewards": "none"}, {"grpo_scale_by_std": False}),
    "scale_rewards false": ({"scale_rewards": False}, {"grpo_scale_by_std": False}),
    "lr_scheduler_type": ({"lr_scheduler_type": "linear"}, {"lr_schedule": "linear"}),
    "adam_epsilon": ({"adam_epsilon": 1e-6}, {"adam_eps": 1e-6}),
    "stop_token_id": ({"stop_token_id": 7}, {"stop_token_ids": [7]}),
    "cliprange (old PPOConfig)": ({"cliprange": 0.1}, {"clip_eps": 0.1}),
    "num_ppo_epochs (old PPOConfig)": ({"num_ppo_epochs": 3}, {"update_epochs": 3}),
    "response_length (old PPOConfig)": ({"response_length": 5}, {"max_new_tokens": 5}),
    "init_kl_coef (first PPOConfig)": ({"init_kl_coef": 0.2}, {"kl_coef": 0.2}),
    "adap_kl_ctrl (first PPOConfig)": ({"adap_kl_ctrl": True}, {"kl_controller": "adaptive"}),
    "mini_batch_size (first PPOConfig)": (
        {"batch_size": 16, "mini_batch_size": 4},
        {"batch_size": 16, "num_minibatches": 4},
    ),
}
OLD_PPO_NAMES = {"cliprange", "cliprange_value", "num_ppo_epochs", "num_mini_batches"}
OLD_PPO_NAMES |= {"response_length", "stop_token_id", "init_kl_coef", "adap_kl_ctrl", "target"}
OLD_PPO_NAMES |= {"horizon", "mini_batch_size"}


@pytest.mark.parametrize("case", sorted(PPO_CASES))
def test_a_trl_name_gives_the_config_of_our_name_silently(case):
    trl_values, ours = PPO_CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a TRL name is not deprecated: no notice at all
        from_trl = PPOConfig(**trl_values)
        from_dict = config_from_dict(PPOConfig, dict(trl_values))
    assert from_trl == PPOConfig(**ours) == from_dict


def test_per_device_train_batch_size_counts_completions_per_micro_batch():
    """TRL: completions per process per micro-batch. Ours: prompts per process per step, split
    into num_minibatches x gradient_accumulation_steps micro-batches of the completions."""
    cfg = PPOConfig(
        estimator="grpo",
        per_device_train_batch_size=8,
        num_generations=4,
        gradient_accumulation_steps=2,
    )
    assert cfg.batch_size * cfg.samples_per_prompt == 8 * 2  # one optimizer step's completions
    assert cfg.batch_size * cfg.samples_per_prompt // cfg.gradient_accumulation_steps == 8
    assert PPOConfig(per_device_train_batch_size=6).batch_size == 6  # 1 sample, 1 micro-batch
    with pytest.raises(ConfigError, match="per_device_train_batch_size=3: .* num_generations=4"):
        PPOConfig(estimator="grpo", per_device_train_batch_size=3, num_generations=4)


def test_our_old_names_still_warn_and_mixing_spellings_is_an_error():
    with pytest.warns(FutureWarning, match="'cpu' is deprecated; use 'use_cpu'"):
        assert PPOConfig(cpu=True).use_cpu
    with pytest.warns(FutureWarning, match="'log_with' is deprecated; use 'report_to'"):
        assert PPOConfig(log_with="tensorboard").report_to == ["tensorboard"]
    with pytest.raises(ConfigError, match="'beta' \\(TRL's name\\) and 'kl_coef' are the same"):
        PPOConfig(beta=0.1, kl_coef=0.2)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"loss_type": "sapo"},
            "loss_type='sapo': no loss aggregation of ours matches; valid: grpo",
        ),
        ({"scale_rewards": "batch"}, "scale_rewards='batch': valid: group, none"),
        ({"use_vllm": True}, "'use_vllm' \\(TRL\\) is not supported: generation runs in"),
        ({"steps_per_generation": 4}, "'steps_per_generation' \\(TRL\\) is not supported"),
        ({"lr_scheduler_type": "cosine"}, "lr_scheduler_type='cosine': valid: constant, linear"),
    ],
)
def test_trl_values_we_cannot_honour_are_one_line(values, message):
    with pytest.raises(ConfigError, match=message) as err:
        config_from_dict(PPOConfig, values, "cfg.yaml")
    assert str(err.value).startswith("cfg.yaml: ") and "\n" not in str(err.value)


def _trl_fields(*classes) -> set[str]:
    return {f.name for c in classes for f in dataclasses.fields(c)}


def test_every_trl_name_is_trls_and_every_target_is_ours():
    """The names are TRL 1.16's (GRPOConfig / RLOOConfig / SFTConfig / RewardConfig fields,
    or its ScriptArguments / ModelConfig), except those of the PPOConfig TRL removed."""
    script = _trl_fields(trl.ScriptArguments, trl.ModelConfig)
    grpo = _trl_fields(trl.GRPOConfig, trl.RLOOConfig) | script
    for cls, reference in [
        (PPOConfig, grpo),
        (SFTArgs, _trl_fields(trl.SFTConfig) | script),
        (RewardModelArgs, _trl_fields(trl.RewardConfig) | script),
    ]:
        ours = {f.name for f in dataclasses.fields(cls)}
        for name, alias in cls.TRL_NAMES.items():
            assert alias.field in ours, (cls.__name__, name)
            assert name not in ours, (cls.__name__, name)  # not shadowing a field of ours
            assert name in reference or name in OLD_PPO_NAMES, (cls.__name__, name)
    # names both sides spell the same need no alias: they are fields of ours and of TRL's
    shared = {"learning_rate", "max_steps", "gradient_accumulation_steps", "temperature", "seed"}
    shared |= {"report_to", "use_cpu", "lora_r", "lora_alpha", "max_grad_norm", "weight_decay"}
    assert shared <= {f.name for f in dataclasses.fields(PPOConfig)}
    assert shared - {"lora_r", "lora_alpha", "temperature"} <= _trl_fields(TrainingArguments)


GRPO_TRL_YAML = """\
task: arithmetic
model_name_or_path: gpt2
reward_fn: exact_match
estimator: grpo
num_generations: 4
per_device_train_batch_size: 16
max_completion_length: 6
beta: 0.02
epsilon: 0.2
epsilon_high: 0.28
num_iterations: 2
loss_type: dr_grpo
scale_rewards: none
learning_rate: 0.0002
max_steps: 20
save_steps: 10
output_dir: runs/x
report_to: [tensorboard]
use_cpu: true
"""
GRPO_OUR_YAML = """\
task: arithmetic
model_name_or_path: gpt2
reward_fn: exact_match
estimator: grpo
samples_per_prompt: 4
batch_size: 4
max_new_tokens: 6
kl_coef: 0.02
clip_eps: 0.2
clip_eps_high: 0.28
update_epochs: 2
loss_aggregation: seq-mean-token-sum
grpo_scale_by_std: false
learning_rate: 0.0002
max_steps: 20
save_every: 10
output_dir: runs/x
report_to: tensorboard
use_cpu: true
"""


def test_a_trl_yaml_and_our_yaml_give_the_same_run(tmp_path):
    (tmp_path / "trl.yaml").write_text(GRPO_TRL_YAML)
    (tmp_path / "ours.yaml").write_text(GRPO_OUR_YAML)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_trl = parse_ppo_args(["--config", str(tmp_path / "trl.yaml")])
    assert from_trl == parse_ppo_args(["--config", str(tmp_path / "ours.yaml")])


def test_trl_flags_parse_as_yaml_values_and_override_the_file_in_any_spelling(tmp_path):
    (tmp_path / "ours.yaml").write_text(GRPO_OUR_YAML)
    argv = ["--config", str(tmp_path / "ours.yaml"), "--beta", "0.1", "--loss_type", "grpo"]
    argv += ["--report_to", "tensorboard", "wandb", "--num_generations", "2"]
    argv += ["--use_peft", "true", "--max_steps", "7"]
    _, cfg = parse_ppo_args(argv)
    assert cfg.kl_coef == 0.1 and cfg.loss_aggregation == "seq-mean-token-mean"
    assert cfg.report_to == ["tensorboard", "wandb"] and cfg.samples_per_prompt == 2
    assert cfg.use_lora and cfg.max_steps == 7
    # our name on the command line overrides the file's TRL name, too
    (tmp_path / "trl.yaml").write_text(GRPO_TRL_YAML)
    _, cfg = parse_ppo_args(["--config", str(tmp_path / "trl.yaml"), "--kl_coef", "0.3"])
    assert cfg.kl_coef == 0.3
    with pytest.raises(ConfigError, match="loss_type='ppo': no loss aggregation of ours"):
        parse_ppo_args(["--config", str(tmp_path / "trl.yaml"), "--loss_type", "ppo"])


def test_recipe_help_lists_trl_names(capsys):
    with pytest.raises(SystemExit):
        parse_recipe_args((PPORecipeArgs, PPOConfig), ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "TRL's names are accepted too:" in out and "beta (= kl_coef)" in out
    assert "--config CONFIG YAML file of settings; flags override it" in out


def test_one_cpu_spelling_across_recipes():
    for cls in (PPOConfig, SFTArgs, RewardModelArgs):
        names = {f.name for f in dataclasses.fields(cls)}
        assert "use_cpu" in names and "cpu" not in names, cls.__name__


def test_sft_and_rm_accept_trl_names_on_the_command_line():
    cfg = parse_recipe_args(
        SFTArgs,
        ["--per_device_train_batch_size", "8", "--dataset_text_field", "body", "--bf16", "true"],
    )
    assert cfg == SFTArgs(batch_size=8, text_column="body", mixed_precision="bf16")
    cfg = parse_recipe_args(
        RewardModelArgs, ["--sft_path", "gpt2", "--per_device_train_batch_size", "4"]
    )
    assert cfg == RewardModelArgs(sft_path="gpt2", batch_size=4)


@pytest.mark.parametrize("recipe", ["sft", "reward_model", "ppo"])
def test_every_recipe_flag_has_help_and_shows_its_default(recipe, capsys):
    import runpy
    from pathlib import Path

    from rlhf_pg.hf.hub import HubArgs

    classes = {"sft": (SFTArgs,), "reward_model": (RewardModelArgs,), "ppo": (PPOConfig,)}
    for cls in (*classes[recipe], HubArgs):
        missing = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("help")]
        assert missing == [], (cls.__name__, missing)
    main = runpy.run_path(str(Path(__file__).parent.parent / "recipes" / f"{recipe}.py"))["main"]
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "<object object" not in out and "--config CONFIG" in out
    assert "(default: " in out
