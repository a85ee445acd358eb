"""The LM step's speed levers change the work, not the result: sampling-pass log-probs,
the on-policy ratio, the skipped reference, the value head's hook, the update's host syncs.
Each is checked against an independent reference (a plain unpadded forward pass, the
REINFORCE gradient, the same step with the skipped work done)."""

from __future__ import annotations

import copy

import pytest
import torch
from lm_fixtures import PROMPTS, make_policy, make_tokenizer, make_trainer, unpadded_logprobs
from model_families import FAMILIES, load_family

from rlhf_pg.core import aggregate_loss
from rlhf_pg.hf import sample_tokens, sample_with_logprobs
from rlhf_pg.hf.tokens import encode_prompts, left_pad, position_ids
from rlhf_pg.lm import PPOConfig, PPOTrainer
from rlhf_pg.lm import rollout as rollout_module
from rlhf_pg.lm.objective import loss_terms, padding_bounds
from rlhf_pg.lm.trainer import sampling_logprobs_are_exact
from rlhf_pg.lm.update import ppo_update
from rlhf_pg.lm.value_head import PolicyWithValueHead

FAMILY_PROMPTS = ["the movie was", "i loved", "what is twelve plus", "the"]


def _entropy(logits):
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("family", FAMILIES)
def test_sampling_logprobs_equal_the_recomputation(family, tmp_path):
    """Same tokens as sample_tokens from the same generator state; each token's log-prob and
    entropy equal those of a plain forward pass over the unpadded prompt + response."""
    model, tok, _ = load_family(family, tmp_path)
    model.eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    encoded = encode_prompts(tok, FAMILY_PROMPTS, max_length=64)
    ids, mask = left_pad(encoded, pad)
    settings = dict(max_new_tokens=8, temperature=0.7, stop_ids=[tok.eos_token_id], pad_id=pad)
    plain = sample_tokens(model, ids, mask, generator=torch.Generator().manual_seed(5), **settings)
    got = sample_with_logprobs(
        model, ids, mask, generator=torch.Generator().manual_seed(5), **settings
    )
    assert torch.equal(got.tokens, plain)
    for i, prompt in enumerate(encoded):
        response = got.tokens[i]  # every drawn token, also past a stop (scored all the same)
        with torch.no_grad():
            expected = unpadded_logprobs(model, torch.tensor(prompt), response, 0.7)
            full = model(input_ids=torch.cat([torch.tensor(prompt), response])[None]).logits
            logits = full[0, len(prompt) - 1 : -1].float() / 0.7
        if bool((response == pad).any()):  # a finished row holds pad, the draw was another token
            keep = response != pad
            expected, logits = expected[keep], logits[keep]
            got_lp, got_ent = got.logprobs[i][keep], got.entropy[i][keep]
        else:
            got_lp, got_ent = got.logprobs[i], got.entropy[i]
        # rounding only (the cached steps multiply in another order): measured about 5e-7
        torch.testing.assert_close(got_lp, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_ent, _entropy(logits), atol=1e-5, rtol=1e-5)


def test_sample_with_logprobs_refuses_greedy_decoding():
    tok = make_tokenizer()
    ids, mask = left_pad(encode_prompts(tok, PROMPTS[:2], max_length=64), tok.eos_token_id)
    with pytest.raises(ValueError, match="temperature > 0, got 0.0"):
        sample_with_logprobs(
            make_policy(tok), ids, mask, max_new_tokens=2, temperature=0.0, stop_ids=[0], pad_id=0
        )


def _count_scoring_passes(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = rollout_module.response_forward

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(rollout_module, "response_forward", counting)
    return calls


@pytest.mark.parametrize(
    ("overrides", "from_sampling", "passes"),
    [
        ({"estimator": "rloo", "samples_per_prompt": 2}, False, 2),  # default: bit-exact pass
        ({"estimator": "rloo", "samples_per_prompt": 2, "sampling_logprobs": True}, True, 1),
        (
            {
                "estimator": "rloo",
                "samples_per_prompt": 2,
                "sampling_logprobs": True,
                "kl_coef": 0.0,
            },
            True,
            0,
        ),
        ({"estimator": "ppo"}, False, 2),  # values need the policy pass; it gives the log-probs
        ({"estimator": "ppo", "kl_coef": 0.0}, False, 1),  # the values pass, no reference
    ],
)
def test_rollout_passes_skipped_only_where_the_result_is_the_same(
    monkeypatch, overrides, from_sampling, passes
):
    trainer = make_trainer(batch_size=2, **overrides)
    assert trainer.logprobs_from_sampling is from_sampling
    calls = _count_scoring_passes(monkeypatch)
    rollout = trainer.generate(PROMPTS[:2])
    assert len(calls) == passes
    policy = trainer.unwrapped_model.pretrained_model
    for i in range(len(rollout)):
        q = rollout.query_ids[i][rollout.query_mask[i]]
        r = rollout.response_ids[i][rollout.response_mask[i]]
        with torch.no_grad():
            expected = unpadded_logprobs(policy, q, r, trainer.config.temperature)
        got = rollout.logprobs[i][rollout.response_mask[i]]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (rollout.ref_logprobs is None) is (trainer.config.kl_coef == 0)


def test_sampling_log_probs_are_not_reused_under_bf16():
    tok = make_tokenizer()
    critic_free = dict(estimator="rloo", samples_per_prompt=2, batch_size=2, use_cpu=True)
    policy = PolicyWithValueHead(make_policy(tok), with_value_head=False)
    assert not sampling_logprobs_are_exact(PPOConfig(**critic_free), policy)  # opt-in only
    critic_free["sampling_logprobs"] = True
    assert sampling_logprobs_are_exact(PPOConfig(**critic_free), policy)
    assert not sampling_logprobs_are_exact(PPOConfig(**critic_free, bf16=True), policy)
    assert not sampling_logprobs_are_exact(PPOConfig(**critic_free), policy.to(torch.bfloat16))


def test_skipping_the_reference_at_kl_coef_zero_leaves_the_update_unchanged():
    """kl_coef fixed at 0: the step without the reference pass updates the parameters exactly
    as the same step with it; the KL is reported as not measured (NaN)."""
    tok = make_tokenizer()
    model = make_policy(tok)
    results = []
    for force_reference in (False, True):
        trainer = make_trainer(
            tok, copy.deepcopy(model), kl_coef=0.0, update_epochs=2, num_minibatches=2, seed=4
        )
        trainer.uses_reference = force_reference or trainer.uses_reference
        torch.manual_seed(0)
        rollout = trainer.generate(PROMPTS[:4])
        assert (rollout.ref_logprobs is None) is not force_reference
        metrics = trainer.step(rollout, [1.0, -1.0, 0.5, 0.0])
        results.append((metrics, [p.detach().clone() for p in trainer.model.parameters()]))
    (skipped, p_skipped), (full, p_full) = results
    assert all(torch.equal(a, b) for a, b in zip(p_skipped, p_full))
    assert skipped["kl/seq"] != skipped["kl/seq"] and full["kl/seq"] == 0.0
    assert skipped["loss/policy"] == full["loss/policy"]


def _micro_batch(trainer, rollout, old_shift: float):
    n, width = rollout.response_ids.shape
    advantages = torch.linspace(-1.0, 1.5, n)[:, None].expand(n, width).clone()
    return {
        "query_ids": rollout.query_ids,
        "query_mask": rollout.query_mask,
        "response_ids": rollout.response_ids,
        "response_mask": rollout.response_mask,
        "old_logprobs": rollout.logprobs + old_shift,  # must not be read on-policy
        "ref_logprobs": None,
        "advantages": advantages * rollout.response_mask,
        "old_values": None,
        "returns": None,
    }


def test_one_epoch_of_one_minibatch_takes_the_reinforce_gradient_at_ratio_one():
    """update_epochs = num_minibatches = 1: the clipped surrogate's gradient is the
    REINFORCE gradient -A grad log pi (ratio exactly 1, nothing clipped), whatever the
    rollout's stored log-probs are."""
    trainer = make_trainer(estimator="reinforce", update_epochs=1, num_minibatches=1)
    cfg = trainer.config
    rollout = trainer.generate(PROMPTS[:4])
    model = trainer.unwrapped_model
    batch = _micro_batch(trainer, rollout, old_shift=0.3)
    width = rollout.response_ids.shape[1]
    terms, stats = loss_terms(model, batch, cfg, with_kl=False, pad_width=width)
    assert float(stats["policy/clipfrac"]) == 0.0 and float(stats["policy/approx_kl"]) == 0.0
    grads = torch.autograd.grad(terms.policy, [p for p in model.parameters() if p.requires_grad])
    # reference: -A * log pi(a|s) from plain per-row forward passes, aggregated alike
    policy = model.pretrained_model
    logprobs = torch.zeros(rollout.response_ids.shape)
    for i in range(len(rollout)):
        valid = rollout.response_mask[i]
        lp = unpadded_logprobs(
            policy, rollout.query_ids[i][rollout.query_mask[i]], rollout.response_ids[i][valid], 1.0
        )
        logprobs = logprobs.index_put((torch.tensor([i]), valid.nonzero()[:, 0]), lp)
    reference = aggregate_loss(
        -batch["advantages"] * logprobs, rollout.response_mask, cfg.loss_aggregation
    )
    expected = torch.autograd.grad(reference, [p for p in model.parameters() if p.requires_grad])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-4)


def test_several_epochs_still_read_the_rollout_log_probs():
    trainer = make_trainer(estimator="reinforce", update_epochs=2, num_minibatches=1)
    rollout = trainer.generate(PROMPTS[:4])
    batch = _micro_batch(trainer, rollout, old_shift=0.3)
    width = rollout.response_ids.shape[1]
    _, stats = loss_terms(trainer.model, batch, trainer.config, with_kl=False, pad_width=width)
    assert float(stats["policy/approx_kl"]) > 0.01  # the shifted old log-probs were used


@pytest.mark.parametrize("family", FAMILIES)
def test_value_head_reads_the_last_hidden_state_at_the_kept_positions(family, tmp_path):
    model, _, _ = load_family(family, tmp_path)
    policy = PolicyWithValueHead(model).eval()
    torch.manual_seed(1)
    torch.nn.init.normal_(policy.v_head.summary.weight)  # zero-initialised heads prove nothing
    torch.nn.init.normal_(policy.v_head.summary.bias)
    ids = torch.randint(3, 200, (3, 9))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, :3] = False  # left padding
    pos = position_ids(mask)
    with torch.no_grad():
        logits, values = policy(ids, mask.long(), pos, logits_to_keep=5)
        out = model(
            input_ids=ids, attention_mask=mask.long(), position_ids=pos, output_hidden_states=True
        )
        expected = policy.v_head(out.hidden_states[-1])[:, -5:]
    assert values.shape == (3, 5)
    torch.testing.assert_close(values, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits, out.logits[:, -5:], atol=1e-6, rtol=1e-5)


def test_padding_bounds_match_the_columns_that_are_padding_in_every_row():
    torch.manual_seed(0)
    query = torch.rand(6, 7) > 0.5
    query[:, -1] = True
    response = torch.rand(6, 5) > 0.4
    response[:, 0] = True
    starts, widths = padding_bounds(query, response)
    for rows in ([0], [1, 2], [0, 3, 5], list(range(6))):
        q, r = query[rows], response[rows]
        first_column_in_use = int(q.any(dim=0).nonzero()[0])
        last_column_in_use = int(r.any(dim=0).nonzero()[-1]) + 1
        assert min(starts[i] for i in rows) == first_column_in_use
        assert max(widths[i] for i in rows) == last_column_in_use


def test_update_names_a_non_finite_batch_tensor_and_a_loss_that_became_nan():
    trainer = make_trainer(estimator="reinforce")
    rollout = trainer.generate(PROMPTS[:4])
    batch = _micro_batch(trainer, rollout, old_shift=0.0)
    args = (trainer.optimizer, trainer.accelerator)
    bad = {**batch, "advantages": batch["advantages"].clone()}
    bad["advantages"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="advantages of the update batch contains NaN"):
        ppo_update(trainer.model, *args, bad, trainer.config, 0.0, torch.Generator())
    with torch.no_grad():
        trainer.unwrapped_model.pretrained_model.lm_head.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="became NaN/inf during the update"):
        ppo_update(trainer.model, *args, batch, trainer.config, 0.0, torch.Generator())


def test_trainer_config_of_the_bench_uses_the_levers():
    """The benchmark's RLOO/GRPO settings (1 epoch, k1/k3 KL) sample their own log-probs; the
    KL to an identical reference at step 0 is then rounding (not exactly 0 as with a critic,
    whose pass gives log-probs bit-identical to the reference's)."""
    tok = make_tokenizer()
    cfg = PPOConfig(
        estimator="grpo", samples_per_prompt=2, batch_size=2, update_epochs=1, kl_penalty="loss",
        kl_estimator="k3", max_new_tokens=4, use_cpu=True, progress_bar=False,
        sampling_logprobs=True,
    )  # fmt: skip
    trainer = PPOTrainer(cfg, make_policy(tok), tok, reward=lambda p, c: [1.0] * len(c))
    assert trainer.logprobs_from_sampling and trainer.uses_reference
    rollout = trainer.generate(PROMPTS[:2])
    metrics = trainer.step(rollout, [1.0, 0.0, 0.5, 0.2])
    assert abs(metrics["kl/token"]) < 1e-5 and abs(metrics["kl/seq"]) < 1e-4
