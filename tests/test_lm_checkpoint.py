"""save_pretrained / from_pretrained, and checkpoint + resume giving an identical continuation."""

import pytest
import torch
from lm_fixtures import PROMPTS, make_policy, make_tokenizer, make_trainer
from transformers import AutoModelForCausalLM

from rlhf_pg.lm import PolicyWithValueHead


def _reward(prompts, completions):
    return [sum(ch in "aeiou" for ch in c) / max(len(c), 1) for c in completions]


def _trainer(tokenizer, **kw):
    return make_trainer(
        tokenizer,
        make_policy(tokenizer),
        reward=_reward,
        prompts=PROMPTS,
        batch_size=3,
        max_steps=4,
        learning_rate=3e-3,
        lr_schedule="linear",
        kl_controller="adaptive",
        num_minibatches=3,
        **kw,
    )


def _state(trainer):
    return {n: p.detach().clone() for n, p in trainer.unwrapped_model.named_parameters()}


@pytest.mark.slow
def test_resume_from_checkpoint_continues_identically(tmp_path):
    tok = make_tokenizer()
    full = _trainer(tok)
    full_history = full.train()

    tok = make_tokenizer()
    first = _trainer(tok)
    first.train(num_steps=2)
    first.save_checkpoint(str(tmp_path / "ckpt"))
    first.train(num_steps=1)  # the saved state must not change afterwards

    tok = make_tokenizer()
    resumed = _trainer(tok)
    resumed.load_checkpoint(str(tmp_path / "ckpt"))
    assert resumed.state.step == 2
    resumed_history = resumed.train()

    for a, b in zip(full_history[2:], resumed_history):
        assert a["score/mean"] == b["score/mean"]
        assert a["kl/coef"] == b["kl/coef"]
        assert a["lr"] == b["lr"]
    final, again = _state(full), _state(resumed)
    for name in final:
        assert torch.equal(final[name], again[name]), name


def test_checkpoint_refuses_a_different_model(tmp_path):
    tok = make_tokenizer()
    trainer = _trainer(tok)
    trainer.save_checkpoint(str(tmp_path / "ckpt"))
    other = make_trainer(make_tokenizer(), estimator="rloo", samples_per_prompt=2)
    with pytest.raises(ValueError, match="does not match this model's trainable weights"):
        other.load_checkpoint(str(tmp_path / "ckpt"))


def test_saved_policy_loads_in_plain_transformers_and_with_its_head(tmp_path):
    tok = make_tokenizer()
    trainer = _trainer(tok)
    trainer.train(num_steps=1)
    trainer.save_pretrained(str(tmp_path / "out"))
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    wrapped = PolicyWithValueHead.from_pretrained(tmp_path / "out")
    ids = torch.tensor([tok("the movie was")["input_ids"]])
    mask, pos = torch.ones_like(ids), torch.arange(ids.shape[1])[None]
    with torch.no_grad():
        want_logits, want_values = trainer.unwrapped_model(ids, mask, pos)
        torch.testing.assert_close(plain(input_ids=ids).logits, want_logits)
        got_logits, got_values = wrapped(ids, mask, pos)
    torch.testing.assert_close(got_values, want_values)
    assert not torch.equal(want_values, torch.zeros_like(want_values))  # the head was trained
    generated = plain.generate(
        ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id
    )
    assert generated.shape[1] > ids.shape[1]
