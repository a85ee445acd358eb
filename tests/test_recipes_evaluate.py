"""The one evaluation (``rlhf_pg.stages.evaluate.evaluate_policy``): its KL against independent
references, the recipe entry point, and the regression of issue 11: evaluating a policy, on
its own or during PPO, never touches the randomness training draws from."""

import copy
import json
import runpy
from pathlib import Path

import pytest
import torch
from lm_fixtures import PROMPTS, make_policy, make_tokenizer, make_trainer, unpadded_logprobs
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from rlhf_pg.hf.sampling import generate_completions
from rlhf_pg.hf.tokens import ensure_pad_token
from rlhf_pg.stages.evaluate import (
    EvalArgs,
    PeftReference,
    evaluate_policy,
    run_evaluation,
    sequence_kl,
)
from rlhf_pg.stages.ppo import RunRecord, evaluate_trainer
from rlhf_pg.stages.ppo_args import PPORecipeArgs
from rlhf_pg.tasks.reviews import build_corpus
from rlhf_pg.tasks.tokenizer import train_tokenizer

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _model(tok, seed):
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2, initializer_range=0.3,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(build_corpus(300, seed=0), vocab_size=300)


def _global_rng():
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return torch.get_rng_state().clone(), [s.clone() for s in cuda]


def _same_rng(a, b) -> bool:
    return torch.equal(a[0], b[0]) and all(torch.equal(x, y) for x, y in zip(a[1], b[1]))


def test_sequence_kl_is_zero_against_itself_and_positive_against_another_model(tok):
    policy, other = _model(tok, 0), _model(tok, 1)
    prompts = ["I watched the film", "The plot"] * 128
    gen = torch.Generator().manual_seed(0)
    _, tokens = generate_completions(policy, tok, prompts, max_new_tokens=6, generator=gen)
    same = sequence_kl(policy, policy, tok, prompts, tokens)
    assert same == pytest.approx([0.0] * len(prompts), abs=1e-5)
    # k1 is unbiased for KL(policy || other) > 0 on policy samples: its mean is clearly positive.
    kl = torch.tensor(sequence_kl(policy, other, tok, prompts, tokens))
    assert kl.mean() > 3 * kl.std() / len(kl) ** 0.5


def test_sequence_kl_equals_unpadded_forward_passes(tok):
    """Padding, batching and temperature do not change the estimate: each row equals the sum
    of log pi - log pi_ref from plain forward passes on that row alone."""
    policy, other = _model(tok, 0), _model(tok, 1)
    prompts = ["I watched the film last night", "The plot", "Great"]
    gen = torch.Generator().manual_seed(3)
    _, tokens = generate_completions(policy, tok, prompts, max_new_tokens=7, generator=gen)
    got = sequence_kl(policy, other, tok, prompts, tokens, temperature=0.7, batch_size=2)
    for p, t, kl in zip(prompts, tokens, got, strict=True):
        q, r = torch.tensor(tok(p)["input_ids"]), torch.tensor(t)
        want = unpadded_logprobs(policy, q, r, 0.7) - unpadded_logprobs(other, q, r, 0.7)
        assert kl == pytest.approx(float(want.sum().detach()), abs=1e-4)


def _save_models(tok, root: Path) -> dict[str, str]:
    paths = {"policy": root / "p", "reference": root / "ref", "rm": root / "rm"}
    _model(tok, 0).save_pretrained(paths["policy"])
    _model(tok, 1).save_pretrained(paths["reference"])
    torch.manual_seed(2)
    rm_config = GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2, num_labels=1,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    GPT2ForSequenceClassification(rm_config).save_pretrained(paths["rm"])
    for path in paths.values():
        tok.save_pretrained(path)
    return {k: str(v) for k, v in paths.items()}


def test_recipe_reports_every_metric_writes_the_file_and_leaves_the_rng_alone(tok, tmp_path):
    paths = _save_models(tok, tmp_path)
    args = EvalArgs(
        model_path=paths["policy"], reference_path=paths["reference"],
        reward_model_path=paths["rm"], n_prompts=8, samples_per_prompt=2, max_new_tokens=5,
        n_samples_shown=3, output_file=str(tmp_path / "eval.json"),
    )  # fmt: skip
    torch.manual_seed(1234)
    before = _global_rng()
    result = run_evaluation(args)
    assert _same_rng(before, _global_rng())  # the regression: no reseeding of the global RNG
    assert -1.0 <= result["gold_mean"] <= 1.0 and 0.0 <= result["gold_positive"] <= 1.0
    assert result["kl_seq"] > 0 and 1 <= result["response_length"] <= 5
    assert isinstance(result["proxy"], float)
    rm = "reward/RewardModel(GPT2ForSequenceClassification)"  # the one reward component
    assert result[rm] == result["proxy"] and 0.0 <= result["eos_rate"] <= 1.0
    keys = {"prompt", "completion", "gold", "proxy", "kl", rm}
    assert [set(r) for r in result["samples"]] == [keys] * 3
    assert len({r["prompt"] for r in result["samples"]}) == 3  # one row per distinct prompt
    assert json.loads((tmp_path / "eval.json").read_text()) == result
    # the same seed gives the same samples; the reference given as the policy gives KL 0
    again = run_evaluation(args)
    assert again["samples"] == result["samples"] and again["gold_mean"] == result["gold_mean"]
    args.reference_path, args.output_file = args.model_path, None
    assert run_evaluation(args)["kl_seq"] == pytest.approx(0.0, abs=1e-5)


def test_recipe_script_prints_the_metrics(tok, tmp_path, capsys):
    paths = _save_models(tok, tmp_path)
    main = runpy.run_path(str(RECIPES / "evaluate.py"))["main"]
    argv = ["--config", str(RECIPES / "configs" / "eval_sentiment.yaml")]
    argv += ["--model_path", paths["policy"], "--n_prompts", "4", "--max_new_tokens", "4"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model_path"] == paths["policy"] and "gold_mean" in printed


def _args(**kw) -> PPORecipeArgs:
    return PPORecipeArgs(model_name_or_path="unused", reward_fn="vader", eval_samples=2, **kw)


def _length_reward(prompts, completions):
    return [float(len(c)) / 10 for c in completions]


def _trajectory(trainer) -> list[dict]:
    """What training did, without the timings (which vary run to run)."""
    history = trainer.train()
    return [
        {k: v for k, v in m.items() if not k.startswith(("time/", "throughput/"))} for m in history
    ]


def test_evaluation_during_training_does_not_change_training():
    """Regression: an evaluation used the trainer's sampler, so how often a run evaluated
    changed what it trained on. Evaluating every step leaves the global RNG, the trainer's
    sample generator and the whole training trajectory exactly as without it."""
    # one tokenizer each: the trainer adds a pad token to the one it is given
    plain = make_trainer(reward=_length_reward, max_steps=3)
    evaluated = make_trainer(reward=_length_reward, max_steps=3)
    args = _args(task="sentiment")

    def evaluate():
        rng, gen = _global_rng(), evaluated.sample_generator.get_state()
        result = evaluate_trainer(evaluated, args, PROMPTS, _length_reward)
        assert _same_rng(rng, _global_rng())
        assert torch.equal(gen, evaluated.sample_generator.get_state())
        return result

    record = RunRecord(evaluate, every=1, last=3)
    evaluated.add_callback(record)
    assert _trajectory(evaluated) == _trajectory(plain)
    assert [e["step"] for e in record.evals] == [1, 2, 3]
    assert [h["step"] for h in record.history] == [1, 2, 3]
    for e in record.evals:
        assert {"gold_mean", "gold_positive", "proxy", "kl_seq", "response_length"} <= set(e)


def test_lora_reference_is_the_policy_with_adapters_disabled():
    tok = make_tokenizer()
    model = make_policy(tok)
    ensure_pad_token(tok, model)
    base = copy.deepcopy(model).eval()
    trainer = make_trainer(
        tok, model, reward=_length_reward, use_lora=True, lora_r=4, learning_rate=1e-2
    )
    for _ in range(2):
        trainer.step(trainer.generate(PROMPTS[:4]), [1.0, -1.0, 0.5, 0.0])
    policy = trainer.unwrapped_model.pretrained_model
    adapters_off = PeftReference(policy)
    gen = torch.Generator().manual_seed(0)
    _, tokens = generate_completions(policy, tok, PROMPTS, max_new_tokens=6, generator=gen)
    via_adapters = sequence_kl(policy, adapters_off, tok, PROMPTS, tokens)
    via_copy = sequence_kl(policy, base, tok, PROMPTS, tokens)  # an independent reference
    assert via_adapters == pytest.approx(via_copy, abs=1e-5)
    assert any(abs(k) > 1e-4 for k in via_copy)  # the adapters do act
    result = evaluate_trainer(
        trainer, _args(task="dataset", dataset_name="unused"), PROMPTS, _length_reward
    )
    assert result["step"] == 2 and "gold_mean" not in result and "kl_seq" in result


def test_evaluate_policy_rejects_an_unknown_task(tok):
    with pytest.raises(ValueError, match="task='poetry' is not valid; choose one of sentiment"):
        evaluate_policy(_model(tok, 0), tok, ["a"], task="poetry", max_new_tokens=2)
