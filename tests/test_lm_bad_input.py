"""Bad input fails with one clear message naming the value, before any training step."""

import pytest
import torch
from lm_fixtures import PROMPTS, make_tokenizer, make_trainer
from transformers import HfArgumentParser

from rlhf_pg.lm import PPOConfig


def test_config_parses_with_hf_argument_parser():
    (cfg,) = HfArgumentParser(PPOConfig).parse_args_into_dataclasses(
        [
            "--estimator",
            "rloo",
            "--samples_per_prompt",
            "4",
            "--stop_token_ids",
            "5",
            "7",
            "--use_lora",
            "true",
            "--lora_target_modules",
            "c_attn",
        ]
    )
    assert cfg.estimator == "rloo" and cfg.samples_per_prompt == 4
    assert cfg.stop_token_ids == [5, 7] and cfg.use_lora and cfg.lora_target_modules == ["c_attn"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"estimator": "ppo2"}, "estimator='ppo2' is not valid; choose one of ppo, reinforce"),
        ({"estimator": "grpo", "samples_per_prompt": 1}, "samples_per_prompt >= 2, got 1"),
        ({"kl_estimator": "k4"}, "kl_estimator='k4' is not valid; choose one of k1, k2, k3"),
        ({"loss_aggregation": "sum"}, "loss_aggregation='sum' is not valid"),
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
        ({"top_p": 1.5}, r"top_k=0, top_p=1.5: training rollouts must sample the full"),
        ({"top_k": 4}, r"top_k=4, top_p=1.0: training rollouts"),
        ({"kl_penalty": "loss"}, r"kl_penalty='loss' with kl_estimator='k1'"),
        ({"batch_size": 3, "num_minibatches": 2}, "3 completions per process cannot be split"),
        ({"log_with": "mlflow"}, "log_with='mlflow' is not valid"),
    ],
)
def test_bad_config_values_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(**kwargs)


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lr'\] for PPOConfig"):
        PPOConfig.from_dict({"lr": 1e-3})


def test_prompt_longer_than_context_errors_or_is_truncated_from_the_left():
    tok = make_tokenizer()
    long_prompt = "one two three four five six seven eight nine ten " * 8
    trainer = make_trainer(tok, max_new_tokens=8)  # context 64 -> prompts up to 56 tokens
    with pytest.raises(ValueError, match=r"prompt 1 has \d+ tokens, over the limit of 56"):
        trainer.generate(["the movie", long_prompt])
    trainer = make_trainer(tok, max_new_tokens=8, prompt_truncation="left")
    rollout = trainer.generate(["the movie", long_prompt])
    assert rollout.query_ids.shape[1] == 56
    assert rollout.query_ids[1, -1] == tok(long_prompt)["input_ids"][-1]


def test_prompt_limit_beyond_context_is_rejected_at_construction():
    with pytest.raises(ValueError, match="exceeds the model's context window of 64"):
        make_trainer(max_prompt_length=60, max_new_tokens=8)


def test_empty_prompts_are_rejected():
    trainer = make_trainer()
    with pytest.raises(ValueError, match="prompts is empty"):
        trainer.generate([])
    with pytest.raises(ValueError, match=r"prompt 1 \(''\) encodes to no tokens"):
        trainer.generate(["the", ""])
    with pytest.raises(ValueError, match="train\\(\\) needs prompts"):
        make_trainer(reward=lambda p, c: [0.0] * len(c), prompts=[]).train()


@pytest.mark.parametrize(
    ("reward_output", "message"),
    [
        (lambda n: [0.0] * (n - 1), "returned 3 scores for 4 completions"),
        (lambda n: [0.0, 1.0, float("nan"), 0.0], "returned nan at index 2"),
        (lambda n: [0.0, None, 0.0, 0.0], "returned a non-number at index 1: None"),
    ],
)
def test_bad_reward_callable_fails_before_any_update(reward_output, message):
    def sentiment(prompts, completions):
        return reward_output(len(completions))

    trainer = make_trainer(reward=sentiment, prompts=PROMPTS)
    before = [p.detach().clone() for p in trainer.unwrapped_model.parameters()]
    with pytest.raises((ValueError, TypeError), match="reward sentiment " + message):
        trainer.train()
    after = list(trainer.unwrapped_model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(after, before))
    assert trainer.state.step == 0


def test_wrong_number_of_scores_passed_to_step():
    trainer = make_trainer()
    rollout = trainer.generate(PROMPTS[:4])
    with pytest.raises(ValueError, match="returned 2 scores for 4 completions"):
        trainer.step(rollout, [1.0, 2.0])


def test_missing_tracker_package_is_reported_with_the_package_name(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(ValueError, match="needs the wandb package"):
        make_trainer(log_with="wandb")


def test_tensorboard_tracker_writes_event_files(tmp_path):
    trainer = make_trainer(
        log_with="tensorboard", output_dir=str(tmp_path), reward=lambda p, c: [1.0] * len(c)
    )
    trainer.train(num_steps=1)
    trainer.end_training()
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1


def test_critic_model_with_critic_free_estimator_is_rejected():
    tok = make_tokenizer()
    from lm_fixtures import make_policy

    with pytest.raises(ValueError, match="critic_model was given but estimator='rloo'"):
        from rlhf_pg.lm import PPOTrainer

        PPOTrainer(
            PPOConfig(estimator="rloo", samples_per_prompt=2),
            make_policy(tok),
            tok,
            critic_model=make_policy(tok),
        )
