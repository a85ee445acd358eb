"""The trainer's sampling and KL on three model families (GPT-2, Llama, Qwen2), each saved
and loaded with ``from_pretrained``, against independent references."""

from __future__ import annotations

import json

import pytest
import torch
from model_families import FAMILIES, load_family

from rlhf_pg.core import kl_k2, kl_k3
from rlhf_pg.hf import generate_completions, sample_tokens
from rlhf_pg.hf.tokens import encode_prompts, left_pad
from rlhf_pg.lm import PPOConfig, PPOTrainer

PROMPTS = ["the movie was", "i loved", "what is twelve plus", "the"]
LEAKY_GENERATION_CONFIG = {
    "repetition_penalty": 1.3,
    "min_new_tokens": 4,
    "no_repeat_ngram_size": 2,
}


def _leaky(family, tmp_path):
    """A saved model whose generation_config.json asks for options RL must not use,
    including suppressing the token greedy decoding of the first prompt starts with."""
    from transformers import AutoModelForCausalLM

    model, tok, path = load_family(family, tmp_path)
    first = _reference_greedy(model.eval(), tok(PROMPTS[0])["input_ids"], 1, tok.eos_token_id)
    config_file = path / "generation_config.json"
    data = json.loads(config_file.read_text()) if config_file.exists() else {}
    leaky = {**data, **LEAKY_GENERATION_CONFIG, "suppress_tokens": first}
    config_file.write_text(json.dumps(leaky))
    return AutoModelForCausalLM.from_pretrained(path).eval(), tok


def _reference_greedy(model, prompt_ids: list[int], steps: int, stop: int) -> list[int]:
    """Argmax decoding with full forward passes, no padding, no cache, no generate()."""
    ids = list(prompt_ids)
    out = []
    for _ in range(steps):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        token = int(logits.argmax())
        out.append(token)
        if token == stop:
            break
        ids.append(token)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_sampler_follows_the_model_alone_not_its_generation_config(family, tmp_path):
    model, tok = _leaky(family, tmp_path)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    encoded = encode_prompts(tok, PROMPTS, max_length=64)
    ids, mask = left_pad(encoded, pad)
    got = sample_tokens(
        model, ids, mask, max_new_tokens=8, temperature=0.0, stop_ids=[tok.eos_token_id], pad_id=pad
    )
    for row, prompt_ids in zip(got.tolist(), encoded):
        expected = _reference_greedy(model, prompt_ids, 8, tok.eos_token_id)
        assert row[: len(expected)] == expected  # left padding and positions change nothing
    # the saved options do bite when generate() reads them, so the comparison above means something
    leaky = model.generate(
        input_ids=torch.tensor([encoded[0]]), max_new_tokens=8, do_sample=False,
        pad_token_id=pad, eos_token_id=tok.eos_token_id,
    )[0, len(encoded[0]):].tolist()  # fmt: skip
    assert leaky != _reference_greedy(model, encoded[0], 8, tok.eos_token_id)[: len(leaky)]


@pytest.mark.parametrize("family", FAMILIES)
def test_rollout_log_probs_equal_an_unpadded_forward_pass(family, tmp_path):
    model, tok = _leaky(family, tmp_path)
    cfg = PPOConfig(
        batch_size=4, max_new_tokens=6, progress_bar=False, use_cpu=True, temperature=0.7
    )
    trainer = PPOTrainer(cfg, model, tok, reward=lambda p, c: [0.0] * len(c))
    rollout = trainer.generate(PROMPTS)
    policy = trainer.unwrapped_model.pretrained_model
    for i in range(len(rollout)):
        q = rollout.query_ids[i][rollout.query_mask[i]]
        r = rollout.response_ids[i][rollout.response_mask[i]]
        if family == "llama":
            assert int(q[0]) == tok.bos_token_id  # prompts carry BOS on the rollout path
        logits = policy(input_ids=torch.cat([q, r])[None]).logits[0, len(q) - 1 : -1] / 0.7
        expected = torch.log_softmax(logits.float(), -1).gather(-1, r[:, None])[:, 0]
        got = rollout.logprobs[i][rollout.response_mask[i]]
        torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)
    assert (
        float(
            rollout.logprobs[rollout.response_mask]
            .sub(rollout.ref_logprobs[rollout.response_mask])
            .abs()
            .max()
        )
        == 0.0
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_prompts_are_encoded_the_same_on_every_path(family, tmp_path):
    model, tok = load_family(family, tmp_path)[:2]
    cfg = PPOConfig(batch_size=4, max_new_tokens=4, progress_bar=False, use_cpu=True)
    trainer = PPOTrainer(cfg, model, tok, reward=lambda p, c: [0.0] * len(c))
    rollout = trainer.generate(PROMPTS)
    from_rollout = [r[m].tolist() for r, m in zip(rollout.query_ids, rollout.query_mask)]
    assert from_rollout == [tok(p)["input_ids"] for p in PROMPTS]
    _, tokens = generate_completions(
        trainer.unwrapped_model.pretrained_model, tok, PROMPTS, max_new_tokens=4,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert len(tokens) == len(PROMPTS)


def test_kl_loss_gradients_on_a_categorical_match_the_analytic_kl_gradients():
    """Exact expectation over a 5-way categorical: E_pi[grad k2] = grad KL(pi || ref) and
    E_pi[grad k3] = grad KL(ref || pi) (samples are not differentiated, as in PPO)."""
    torch.manual_seed(0)
    theta = torch.randn(5, dtype=torch.float64, requires_grad=True)
    ref_logp = torch.log_softmax(torch.randn(5, dtype=torch.float64), -1)
    logp = torch.log_softmax(theta, -1)
    pi, ref = logp.exp(), ref_logp.exp()
    reverse = torch.autograd.grad((pi * (logp - ref_logp)).sum(), theta, retain_graph=True)[0]
    forward = torch.autograd.grad((ref * (ref_logp - logp)).sum(), theta, retain_graph=True)[0]
    weights = pi.detach()  # E over x ~ pi of the per-sample loss gradient
    k2 = torch.autograd.grad((weights * kl_k2(logp, ref_logp)).sum(), theta, retain_graph=True)[0]
    k3 = torch.autograd.grad((weights * kl_k3(logp, ref_logp)).sum(), theta)[0]
    torch.testing.assert_close(k2, reverse)
    torch.testing.assert_close(k3, forward)


def test_kl_loss_term_depends_on_the_reference():
    from lm_fixtures import make_policy, make_tokenizer

    def update(ref_seed: int) -> dict[str, torch.Tensor]:
        tok = make_tokenizer()
        cfg = PPOConfig(
            batch_size=4, max_new_tokens=5, progress_bar=False, use_cpu=True, estimator="grpo",
            samples_per_prompt=2, kl_penalty="loss", kl_estimator="k2", kl_coef=1.0,
            learning_rate=1e-2, seed=0,
        )  # fmt: skip
        trainer = PPOTrainer(cfg, make_policy(tok), tok, ref_model=make_policy(tok, seed=ref_seed))
        rollout = trainer.generate(PROMPTS)
        trainer.step(rollout, [1.0] * len(rollout))  # equal scores: only the KL term moves
        return {n: p.detach().clone() for n, p in trainer.unwrapped_model.named_parameters()}

    a, b = update(1), update(2)
    assert any(not torch.allclose(a[n], b[n]) for n in a)


@pytest.mark.parametrize("family", ["gpt2", "llama"])  # neither has a pad token
def test_explicit_reference_grows_with_the_pad_token_and_kl_starts_at_zero(family, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok, path = load_family(family, tmp_path)
    assert tok.pad_token is None
    reference = AutoModelForCausalLM.from_pretrained(path)
    cfg = PPOConfig(batch_size=4, max_new_tokens=5, progress_bar=False, use_cpu=True)
    trainer = PPOTrainer(cfg, model, tok, ref_model=reference, reward=lambda p, c: [0.0] * len(c))
    assert reference.get_input_embeddings().num_embeddings == len(tok)
    rollout = trainer.generate(PROMPTS)
    mask = rollout.response_mask
    assert torch.equal(rollout.logprobs[mask], rollout.ref_logprobs[mask])  # KL exactly 0


@pytest.mark.parametrize("family", FAMILIES)
def test_dropout_is_off_in_train_mode_for_every_family(family, tmp_path):
    dropout = {"gpt2": {"attn_pdrop": 0.1, "resid_pdrop": 0.1, "embd_pdrop": 0.1}}.get(
        family, {"attention_dropout": 0.1}
    )
    model, tok, _ = load_family(family, tmp_path, **dropout)
    cfg = PPOConfig(batch_size=4, max_new_tokens=4, progress_bar=False, use_cpu=True)
    trainer = PPOTrainer(cfg, model, tok, reward=lambda p, c: [0.0] * len(c))
    policy = trainer.unwrapped_model.pretrained_model.train()
    ids = torch.tensor([tok("the movie was great")["input_ids"]])
    torch.testing.assert_close(
        policy(input_ids=ids).logits, policy(input_ids=ids).logits, atol=0, rtol=0
    )
