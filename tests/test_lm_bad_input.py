"""Bad input fails with one clear message naming the value, before any training step."""

import os

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
        ({"generation_threads": -1}, "generation_threads must be an integer >= 0, got -1"),
        ({"report_to": "mlflow"}, "report_to='mlflow' is not valid"),
        ({"report_to": ["tensorboard", "comet"]}, "report_to='comet' is not valid"),
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
        (lambda n: [0.0] * (n - 1), "reward sentiment returned 3 scores for 4 completions"),
        (lambda n: [0.0, 1.0, float("nan"), 0.0], "reward sentiment returned nan at index 2"),
        (lambda n: [0.0, "x", 0.0, 0.0], "reward sentiment returned a non-number at index 1"),
        # None is "does not apply"; a completion that no reward applies to has no score
        (lambda n: [0.0, None, 0.0, 0.0], "no reward applies to completion 1 .*sentiment"),
    ],
)
def test_bad_reward_callable_fails_before_any_update(reward_output, message):
    def sentiment(prompts, completions):
        return reward_output(len(completions))

    trainer = make_trainer(reward=sentiment, prompts=PROMPTS)
    before = [p.detach().clone() for p in trainer.unwrapped_model.parameters()]
    with pytest.raises((ValueError, TypeError), match=message):
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
        make_trainer(report_to="wandb")


def test_tensorboard_tracker_writes_event_files(tmp_path):
    trainer = make_trainer(
        report_to=["tensorboard"], output_dir=str(tmp_path), reward=lambda p, c: [1.0] * len(c)
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


# ------------------------------------------------------------------ the probe table
def _tree(root) -> dict:
    """Every path under ``root``: folders by name, files with size, mode, mtime and bytes."""
    tree = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        key = str(p.relative_to(root))
        tree[key] = (
            "dir" if p.is_dir() else (st.st_size, st.st_mode, st.st_mtime_ns, p.read_bytes())
        )
    return tree


def _used_run(tmp_path):
    """A folder holding an earlier run's metrics and checkpoint."""
    out = tmp_path / "used"
    (out / "checkpoint-000003").mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    return out


def _sentiment(prompts, completions):
    return [0.0] * len(completions)


# (probe, trainer arguments given tmp_path, what the message says, the error, where it fails:
# "init" = PPOTrainer(...), "train" = train(), "load" = load_checkpoint(tmp_path / FILE))
# fmt: off
PROBES = [
    ("reward=5", lambda t: {"reward": 5}, "got 5 (int)", TypeError, "init"),
    ("reward='vader'", lambda t: {"reward": "vader"}, "got 'vader' (str)", TypeError, "init"),
    ("reward=[(0.5, 'vader')]", lambda t: {"reward": [(0.5, "vader")]},
     "reward 0 is not callable: 'vader' (str)", TypeError, "init"),
    ("reward=[3]", lambda t: {"reward": [3]}, "reward 0 is not callable: 3 (int)", TypeError, "init"),
    ("reward weight inf", lambda t: {"reward": [(float("inf"), _sentiment)]},
     "reward 0 weight must be finite, got inf", ValueError, "init"),
    ("reward weight 'x'", lambda t: {"reward": [("x", _sentiment)]},
     "reward 0 weight must be a number, got 'x'", TypeError, "init"),
    ("output_dir is a file", lambda t: {"output_dir": str(t / "file")},
     "output_dir '{t}/file' is a file", ValueError, "init"),
    ("output_dir under a file", lambda t: {"output_dir": str(t / "file" / "run")},
     "output_dir '{t}/file/run' is under '{t}/file'", ValueError, "init"),
    ("output_dir not writable", lambda t: {"output_dir": "/sys/rlhf_pg_run"},
     "output_dir '/sys/rlhf_pg_run' cannot be created", ValueError, "init"),
    ("save_every without output_dir", lambda t: {"save_every": 2},
     "save_every=2 needs an output_dir", ValueError, "init"),
    ("learning_rate='1e-5'", lambda t: {"learning_rate": "1e-5"},
     "learning_rate='1e-5' is invalid", ValueError, "init"),
    ("temperature=inf", lambda t: {"temperature": float("inf")},
     "temperature=inf must be a finite number", ValueError, "init"),
    ("max_steps=2.5", lambda t: {"max_steps": 2.5}, "max_steps=2.5 is invalid", ValueError, "init"),
    ("fresh run in a used output_dir", lambda t: {"output_dir": str(_used_run(t))},
     "output_dir '{t}/used' already holds a run", ValueError, "train"),
    ("resume from a file", lambda t: {"output_dir": str(t / "new")},
     "checkpoint {t}/file is a file, not a checkpoint folder", ValueError, "load"),
    ("resume from a missing folder", lambda t: {"output_dir": str(t / "new"), "load": "nope"},
     "checkpoint {t}/nope not found", ValueError, "load"),
    ("resume from a folder that is no checkpoint", lambda t: {"output_dir": str(t / "new"), "load": "."},
     "is not a trainer checkpoint (no trainer_state.pt)", ValueError, "load"),
]
# fmt: on


@pytest.mark.parametrize(
    ("probe", "kwargs", "named", "error", "stage"), PROBES, ids=[p[0] for p in PROBES]
)
def test_bad_input_is_one_line_naming_the_value_and_changes_nothing_on_disk(
    tmp_path, probe, kwargs, named, error, stage
):
    (tmp_path / "file").write_text("not a folder")
    settings = {"reward": _sentiment, "max_steps": 1, **kwargs(tmp_path)}
    load = tmp_path / settings.pop("load", "file")
    if settings.get("output_dir", "").startswith("/sys/"):
        try:
            os.makedirs(settings["output_dir"])
            pytest.skip("/sys is writable here")
        except OSError:
            pass
    before = _tree(tmp_path)
    config = {k: v for k, v in settings.items() if k != "reward"}
    trainer = None
    with pytest.raises(error) as err:
        trainer = make_trainer(reward=settings["reward"], **config)
        if stage == "train":
            trainer.train()
        elif stage == "load":
            trainer.load_checkpoint(str(load))
    message = str(err.value)
    assert named.format(t=tmp_path) in message, message  # names the value given
    assert "\n" not in message and "Traceback" not in message
    assert (trainer is None) == (stage == "init")  # construction fails for bad arguments
    if trainer is not None:
        trainer.end_training()  # lets go of output_dir (its lock file goes)
    after = _tree(tmp_path)
    if stage == "load":  # the trainer's own new (empty) output_dir is all that appeared
        assert after.pop("new") == "dir"
    assert after == before, probe


def test_an_output_dir_held_by_another_process_is_refused_naming_it(tmp_path):
    from test_run_folder import _holder

    out = tmp_path / "run"
    holder = _holder(out)
    try:
        before = _tree(tmp_path)
        with pytest.raises(ValueError) as err:
            make_trainer(output_dir=str(out))
        message = str(err.value)
        assert f"output_dir '{out}' is in use by process {holder.pid} " in message
        assert "\n" not in message and _tree(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()


def test_processes_of_a_launch_that_form_no_group_stop_at_construction(tmp_path, monkeypatch):
    """``accelerate launch`` with a multi-GPU config on a machine without GPUs: each of the
    WORLD_SIZE processes sees a group of one. (The accelerate state of this test process
    exists already, so it stays a group of one while WORLD_SIZE says 2.)"""
    make_trainer()  # the process-wide accelerate state: one process
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError) as err:
        make_trainer(output_dir=str(tmp_path / "run"))
    message = str(err.value)
    assert "started 2 processes (WORLD_SIZE=2) but this one sees a group of 1" in message
    assert "--use_cpu true" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []  # stopped before it claimed the folder
