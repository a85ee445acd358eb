"""LoRA via peft: the adapter-disabled reference equals the base model; only adapters + head train."""

import copy

import pytest
import torch
from lm_fixtures import PROMPTS, make_policy, make_tokenizer, make_trainer, unpadded_logprobs

from rlhf_pg.hf.tokens import ensure_pad_token
from rlhf_pg.lm import PolicyWithValueHead


def _lora_trainer(**kw):
    tok = make_tokenizer()
    model = make_policy(tok)
    ensure_pad_token(tok, model)
    base_copy = copy.deepcopy(model).eval()
    trainer = make_trainer(tok, model, use_lora=True, lora_r=4, learning_rate=1e-2, **kw)
    return trainer, base_copy, tok


def test_lora_reference_is_the_untouched_base_and_only_adapters_and_head_change():
    trainer, base, _ = _lora_trainer()
    assert trainer.ref_model is None  # no second copy of the weights
    before = {n: p.detach().clone() for n, p in trainer.unwrapped_model.named_parameters()}
    for _ in range(2):
        rollout = trainer.generate(PROMPTS[:4])
        trainer.step(rollout, [1.0, -1.0, 0.5, 0.0])
    after = dict(trainer.unwrapped_model.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p.detach(), before[n])}
    assert changed, "the step must change something"
    assert all("lora_" in n or n.startswith("v_head.") for n in changed), changed
    assert any("lora_B" in n for n in changed) and any(n.startswith("v_head.") for n in changed)

    rollout = trainer.generate(PROMPTS)
    with torch.no_grad():
        for i in range(len(rollout)):
            q = rollout.query_ids[i][rollout.query_mask[i]]
            r = rollout.response_ids[i][rollout.response_mask[i]]
            fresh = unpadded_logprobs(base, q, r, temperature=1.0)
            ref = rollout.ref_logprobs[i][rollout.response_mask[i]]
            torch.testing.assert_close(ref, fresh, atol=1e-5, rtol=0)
    assert not torch.allclose(rollout.logprobs, rollout.ref_logprobs)  # adapters do act


def test_lora_save_and_load_round_trip(tmp_path):
    trainer, base, tok = _lora_trainer()
    trainer.step(trainer.generate(PROMPTS[:4]), [1.0, -1.0, 0.5, 0.0])
    trainer.save_pretrained(str(tmp_path / "policy"))
    assert (tmp_path / "policy" / "adapter_config.json").exists()
    assert (tmp_path / "policy" / "value_head.safetensors").exists()
    loaded = PolicyWithValueHead.from_pretrained(tmp_path / "policy", base_model=base)
    original = trainer.unwrapped_model
    ids = torch.tensor([tok("the movie was")["input_ids"]])
    pos = torch.arange(ids.shape[1])[None]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want_logits, want_values = original(ids, mask, pos)
        got_logits, got_values = loaded(ids, mask, pos)
    torch.testing.assert_close(got_logits, want_logits)
    torch.testing.assert_close(got_values, want_values)


def test_missing_lora_target_module_is_named():
    tok = make_tokenizer()
    with pytest.raises(ValueError, match=r"\['q_proj'\] not found .*c_attn"):
        make_trainer(tok, use_lora=True, lora_target_modules=["q_proj"])


def _sft_adapter(tok):
    """A peft model whose (SFT) adapter is not the identity: base + adapter != base."""
    from peft import LoraConfig, get_peft_model

    model = make_policy(tok)
    ensure_pad_token(tok, model)
    lora = LoraConfig(r=4, lora_alpha=8, fan_in_fan_out=True, init_lora_weights=False)
    return get_peft_model(model, lora)


def test_starting_from_an_sft_adapter_the_reference_is_base_plus_that_adapter():
    tok = make_tokenizer()
    sft = _sft_adapter(tok)
    trainer = make_trainer(tok, sft, use_lora=True, learning_rate=1e-2)
    rollout = trainer.generate(PROMPTS[:4])
    mask = rollout.response_mask
    assert torch.equal(rollout.logprobs[mask], rollout.ref_logprobs[mask])  # KL exactly 0
    trainer.step(rollout, [1.0, -1.0, 0.5, 0.0])
    again = trainer.generate(PROMPTS[:4])
    m = again.response_mask
    assert not torch.equal(again.logprobs[m], again.ref_logprobs[m])  # the adapter trained
    reference = [p for n, p in trainer.unwrapped_model.named_parameters() if ".reference." in n]
    assert reference and not any(p.requires_grad for p in reference)


def test_lora_config_object_is_accepted():
    from peft import LoraConfig

    tok = make_tokenizer()
    config = LoraConfig(r=2, lora_alpha=4, fan_in_fan_out=True, target_modules=["c_attn"])
    trainer = make_trainer(tok, peft_config=config)
    trainable = [n for n, p in trainer.unwrapped_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "v_head" in n for n in trainable)
    assert all("c_attn" in n for n in trainable if "lora_" in n)


def test_lora_round_trip_when_the_trainer_added_the_pad_token(tmp_path):
    tok = make_tokenizer()  # no pad token: the trainer adds one and grows the embeddings
    model = make_policy(tok)
    pristine = copy.deepcopy(model)  # the base as the user has it on disk, without the pad row
    trainer = make_trainer(tok, model, use_lora=True, lora_r=4, learning_rate=1e-2)
    trainer.step(trainer.generate(PROMPTS[:4]), [1.0, -1.0, 0.5, 0.0])
    trainer.save_pretrained(str(tmp_path / "policy"))
    loaded = PolicyWithValueHead.from_pretrained(tmp_path / "policy", base_model=pristine).eval()
    assert loaded.pretrained_model.get_input_embeddings().num_embeddings == len(tok)
    ids = torch.tensor([tok("the movie was")["input_ids"] + [tok.pad_token_id]])
    pos = torch.arange(ids.shape[1])[None]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want = trainer.unwrapped_model.eval()(ids, mask, pos)
        got = loaded(ids, mask, pos)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
