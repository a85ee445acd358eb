"""The SFT and reward-model stages on TRL's trainers: the user's knobs reach SFTConfig /
RewardConfig, datasets go through SFTTrainer in its formats (checked against losses computed
here by hand), the generated corpus keeps our loop and its schedule; report_to and
epsilon_high reach accelerate and the loss."""

import importlib.util
import json
import math

import pytest
import torch
from accelerate.utils import LoggerType
from datasets import Dataset
from model_families import save_family
from transformers import AutoModelForCausalLM, AutoTokenizer

import rlhf_pg.lm.objective
import rlhf_pg.stages.sft_datasets
from rlhf_pg.lm import PPOConfig
from rlhf_pg.lm.tracking import tracker_names
from rlhf_pg.stages.reward_model import RewardModelArgs, reward_config
from rlhf_pg.stages.sft import SFTArgs, make_schedule, train_sft
from rlhf_pg.stages.sft_datasets import sft_config
from rlhf_pg.utils.config import ConfigError

# ---------------------------------------------------------------- report_to


def test_report_to_takes_a_name_or_a_list():
    assert PPOConfig().report_to == [] and PPOConfig(report_to="none").report_to == []
    assert PPOConfig(report_to="wandb").report_to == ["wandb"]
    assert PPOConfig(report_to=["tensorboard", "trackio"]).report_to == ["tensorboard", "trackio"]
    assert SFTArgs(report_to="tensorboard").report_to == ["tensorboard"]
    with pytest.raises(ConfigError, match="report_to='mlflow' is not valid; choose from"):
        RewardModelArgs(sft_path="gpt2", report_to=["mlflow"])


def test_trackio_maps_to_accelerates_tracker_without_being_imported(monkeypatch):
    """trackio is an optional extra (not installed here): the mapping is checked against
    accelerate's own tracker names, with the package's presence faked."""
    real = importlib.util.find_spec
    installed = {"tensorboard", "trackio"}

    def fake(name, *args):
        if name in ("tensorboard", "wandb", "trackio"):
            return object() if name in installed else None
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    names = tracker_names(["trackio", "tensorboard"])
    assert names == ["trackio", "tensorboard"]
    assert set(names) <= {t.value for t in LoggerType}  # accelerate's log_with accepts them
    assert tracker_names(["all"]) == ["tensorboard", "trackio"]  # the installed ones
    installed.discard("trackio")
    with pytest.raises(
        ValueError, match=r"pip install trackio \(or pip install 'rlhf-pg\[trackio\]'"
    ):
        tracker_names(["trackio"])


def test_sft_loop_with_accumulation_checkpointing_and_tensorboard(tmp_path):
    """Our loop honours the knobs TRL users set: 2 micro-batches per step, activation
    checkpointing, TensorBoard logs kept in the model folder; it still learns."""
    cfg = SFTArgs(
        corpus_size=300, vocab_size=300, n_layer=1, n_head=2, n_embd=16, max_steps=10,
        batch_size=4, gradient_accumulation_steps=2, gradient_checkpointing=True,
        learning_rate=5e-3, warmup_steps=1, log_every=3, report_to=["tensorboard"],
        use_cpu=True, output_dir=str(tmp_path / "sft"), progress=False,
    )  # fmt: skip
    path = train_sft(cfg)
    metrics = json.loads((path / "sft_metrics.json").read_text())
    assert [row["step"] for row in metrics["history"]] == [0, 3, 6, 9]
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"] - 0.5
    assert list((path / "logs").rglob("events.out.tfevents.*"))


# ---------------------------------------------------------------- epsilon_high


def test_epsilon_high_reaches_the_clipped_loss(monkeypatch):
    from lm_fixtures import make_trainer

    seen = []
    real = rlhf_pg.lm.objective.ppo_clip_loss

    def spy(*args, **kwargs):
        seen.append((kwargs["clip_eps"], kwargs["clip_eps_high"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(rlhf_pg.lm.objective, "ppo_clip_loss", spy)
    reward = lambda p, c: [float(len(x)) for x in c]  # noqa: E731
    make_trainer(reward=reward, epsilon=0.1, epsilon_high=0.28, update_epochs=1).train(num_steps=1)
    make_trainer(reward=reward, update_epochs=1).train(num_steps=1)
    assert seen == [(0.1, 0.28), (0.2, None)]  # unset: the core's symmetric clip


# ---------------------------------------------------------------- knobs reach TRL


def test_sft_config_receives_the_users_knobs():
    cfg = SFTArgs(
        task="dataset", dataset_name="d", per_device_train_batch_size=5,
        gradient_accumulation_steps=3, learning_rate=2e-4, lr_scheduler_type="linear",
        warmup_steps=7, max_length=99, packing=True, completion_only_loss=False,
        assistant_only_loss=True, gradient_checkpointing=True, report_to="tensorboard",
        dataset_text_field="body", logging_steps=3, max_grad_norm=0.5, weight_decay=0.1,
        bf16=True, use_cpu=True, seed=4,
    )  # fmt: skip
    args = sft_config(cfg, "scratch")
    expected = {
        "per_device_train_batch_size": 5, "gradient_accumulation_steps": 3,
        "learning_rate": 2e-4, "warmup_steps": 7, "max_length": 99, "packing": True,
        "completion_only_loss": False, "assistant_only_loss": True,
        "activation_checkpointing": True, "report_to": ["tensorboard"],
        "dataset_text_field": "body", "logging_steps": 3, "max_grad_norm": 0.5,
        "weight_decay": 0.1, "bf16": True, "fp16": False, "use_cpu": True, "seed": 4,
        "max_steps": 400,
    }  # fmt: skip
    assert {k: getattr(args, k) for k in expected} == expected
    assert args.lr_scheduler_type.value == "linear"
    epochs = sft_config(SFTArgs(task="dataset", dataset_name="d", num_train_epochs=2.0), "s")
    assert epochs.max_steps == -1 and epochs.num_train_epochs == 2.0


def test_reward_config_receives_the_users_knobs_and_keeps_the_demos_defaults():
    cfg = RewardModelArgs(
        sft_path="gpt2", per_device_train_batch_size=8, gradient_accumulation_steps=2,
        lr_scheduler_type="linear", warmup_steps=3, max_steps=11, bf16=True,
        gradient_checkpointing=True, disable_dropout=False, report_to=["tensorboard"],
        logging_steps=5, max_grad_norm=0.3, use_cpu=True,
    )  # fmt: skip
    args = reward_config(cfg, "scratch")
    expected = {
        "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, "warmup_steps": 3,
        "max_steps": 11, "bf16": True, "activation_checkpointing": True,
        "disable_dropout": False, "report_to": ["tensorboard"], "logging_steps": 5,
        "max_grad_norm": 0.3,
    }  # fmt: skip
    assert {k: getattr(args, k) for k in expected} == expected
    assert args.lr_scheduler_type.value == "linear"
    # the values the demo's reward model was trained with before these knobs existed
    demo = reward_config(RewardModelArgs(sft_path="gpt2"), "scratch")
    before = {
        "lr_scheduler_type": "cosine", "warmup_steps": 20, "logging_steps": 20, "bf16": False,
        "activation_checkpointing": False, "max_grad_norm": 1.0, "disable_dropout": True,
        "max_steps": -1, "num_train_epochs": 3.0, "per_device_train_batch_size": 32,
        "gradient_accumulation_steps": 1, "report_to": [],
    }  # fmt: skip
    got = {k: getattr(demo, k) for k in before}
    got["lr_scheduler_type"] = got["lr_scheduler_type"].value
    assert got == before


def test_our_loops_schedule_is_unchanged_and_other_schedules_are_transformers():
    """The demo's SFT figures were measured with warm-up from step 1 then cosine to 10%."""
    cfg = SFTArgs(warmup_steps=5, max_steps=40, learning_rate=1.0)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched, lrs = make_schedule(cfg, opt, cfg.max_steps), []
    for _ in range(cfg.max_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [
        (s + 1) / 5 if s < 5 else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - 5) / 35))
        for s in range(40)
    ]
    assert lrs == pytest.approx(expected)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    make_schedule(SFTArgs(lr_scheduler_type="constant", warmup_steps=0), opt, 10)
    assert opt.param_groups[0]["lr"] == 1.0
    with pytest.raises(ConfigError, match="lr_scheduler_type='cosine_to_zero' must be one of"):
        SFTArgs(lr_scheduler_type="cosine_to_zero")


def test_sft_trainer_only_knobs_are_refused_on_the_generated_corpus():
    with pytest.raises(ConfigError, match="packing=True applies to task 'dataset'"):
        SFTArgs(task="sentiment", packing=True)


# ---------------------------------------------------------------- datasets via SFTTrainer


def _rows(n: int) -> list[dict]:
    a = ["what is twelve plus seven", "i loved the music", "the film was terrible"]
    b = [" nineteen", " and the story", " and the plot was boring"]
    return [{"prompt": a[i % 3], "completion": b[i % 3]} for i in range(n)]


def _token_mean_loss(model, sequences: list[list[int]], starts: list[int]) -> float:
    """Mean next-token NLL over positions >= start of each sequence, by hand."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, start in zip(sequences, starts):
            logits = model(input_ids=torch.tensor([ids])).logits[0]
            logp = torch.log_softmax(logits[:-1].float(), -1)
            nll = -logp.gather(-1, torch.tensor(ids[1:])[:, None]).squeeze(-1)
            keep = nll[max(0, start - 1) :]
            total, count = total + float(keep.sum()), count + len(keep)
    return total / count


def _sft_dataset_cfg(tmp_path, data, family_path, **kw) -> SFTArgs:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in data))
    settings = dict(
        task="dataset", dataset_name=str(path), model_name_or_path=str(family_path),
        max_steps=1, batch_size=8, eval_fraction=0.2, learning_rate=1e-3, warmup_steps=0,
        use_cpu=True, progress=False, output_dir=str(tmp_path / "sft"),
    )  # fmt: skip
    return SFTArgs(**{**settings, **kw})


def _eval_rows(cfg: SFTArgs, data):
    return Dataset.from_list(data).train_test_split(test_size=cfg.eval_fraction, seed=cfg.seed)[
        "test"
    ]


@pytest.mark.parametrize("completion_only", [None, False])
def test_prompt_completion_data_trains_with_sft_trainer_on_completion_tokens(
    tmp_path, completion_only
):
    family = save_family("qwen2", tmp_path / "qwen2")
    data = _rows(20)
    cfg = _sft_dataset_cfg(tmp_path, data, family, completion_only_loss=completion_only)
    path = train_sft(cfg)
    metrics = json.loads((path / "sft_metrics.json").read_text())
    assert metrics["dataset_format"] == "prompt-completion" and len(metrics["history"]) == 1

    # reference: the untrained model's loss on the held-out rows, computed here
    model = AutoModelForCausalLM.from_pretrained(family)
    tok = AutoTokenizer.from_pretrained(family)
    held = _eval_rows(cfg, data)
    seqs = [tok(r["prompt"] + r["completion"])["input_ids"] + [tok.eos_token_id] for r in held]
    starts = [len(tok(r["prompt"])["input_ids"]) if completion_only is None else 0 for r in held]
    assert metrics["eval_loss_before"] == pytest.approx(
        _token_mean_loss(model, seqs, starts), rel=1e-4
    )
    assert AutoModelForCausalLM.from_pretrained(path).config.model_type == "qwen2"


def test_conversations_go_through_the_chat_template(tmp_path):
    family = save_family("qwen2", tmp_path / "qwen2")
    data = [
        {"messages": [{"role": "user", "content": r["prompt"]},
                      {"role": "assistant", "content": r["completion"].strip()}]}
        for r in _rows(20)
    ]  # fmt: skip
    cfg = _sft_dataset_cfg(tmp_path, data, family)
    metrics = json.loads((train_sft(cfg) / "sft_metrics.json").read_text())
    assert metrics["dataset_format"] == "messages"
    model = AutoModelForCausalLM.from_pretrained(family)
    tok = AutoTokenizer.from_pretrained(family)
    held = _eval_rows(cfg, data)
    seqs = [
        tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]
        for r in held
    ]
    reference = _token_mean_loss(model, [list(s) for s in seqs], [0] * len(seqs))
    assert metrics["eval_loss_before"] == pytest.approx(reference, rel=1e-4)


def test_conversations_without_a_chat_template_fail_before_the_model_is_built(
    tmp_path, monkeypatch
):
    family = save_family("gpt2", tmp_path / "gpt2")  # no chat template
    data = [{"messages": [{"role": "user", "content": "hi"}]}] * 4
    cfg = _sft_dataset_cfg(tmp_path, data, family)
    monkeypatch.setattr(rlhf_pg.stages.sft_datasets, "build_model", lambda *a: pytest.fail("built"))
    with pytest.raises(
        ConfigError, match="holds conversations but the tokenizer .* no chat template"
    ):
        train_sft(cfg)
    assert not (tmp_path / "sft").exists()


def test_trl_dataset_arguments_reach_the_loader(monkeypatch, tmp_path):
    """TRL's ScriptArguments (dataset_name, dataset_config, dataset_train_split) on the
    command line reach the dataset loader of the SFT and reward-model stages."""
    import rlhf_pg.tasks.datasets
    from rlhf_pg.stages.reward_model import train_reward_model
    from rlhf_pg.utils.config import parse_recipe_args

    seen = []

    def loader(name, split="train", config=None):
        seen.append((name, split, config))
        raise ConfigError("stop here")

    monkeypatch.setattr(rlhf_pg.tasks.datasets, "load_any_dataset", loader)
    argv = ["--dataset_config", "c", "--dataset_train_split", "tr", "--use_cpu", "true"]
    sft = parse_recipe_args(
        SFTArgs,
        [
            "--task",
            "dataset",
            "--dataset_name",
            "org/d",
            "--output_dir",
            str(tmp_path / "s"),
            *argv,
        ],
    )
    rm = parse_recipe_args(
        RewardModelArgs,
        ["--preference_dataset", "org/p", "--output_dir", str(tmp_path / "r"), *argv],
    )
    for run, cfg in ((train_sft, sft), (train_reward_model, rm)):
        with pytest.raises(ConfigError, match="stop here"):
            run(cfg)
    assert seen == [("org/d", "tr", "c"), ("org/p", "tr", "c")]
