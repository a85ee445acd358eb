"""Evaluation helpers: the KL estimate is zero against itself, positive against another model."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf_pg.hf.sampling import generate_completions
from rlhf_pg.stages.evaluate import EvalArgs, evaluate_policy, sequence_kl
from rlhf_pg.tasks.reviews import build_corpus
from rlhf_pg.tasks.tokenizer import train_tokenizer


def _model(tok, seed):
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2, initializer_range=0.3,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval()


def test_sequence_kl_is_zero_against_itself_and_positive_against_another_model():
    tok = train_tokenizer(build_corpus(300, seed=0), vocab_size=300)
    policy, other = _model(tok, 0), _model(tok, 1)
    prompts = ["I watched the film", "The plot"] * 128
    _, tokens = generate_completions(policy, tok, prompts, max_new_tokens=6)
    same = sequence_kl(policy, policy, tok, prompts, tokens)
    assert same == pytest.approx([0.0] * len(prompts), abs=1e-5)
    # k1 is unbiased for KL(policy || other) > 0 on policy samples: its mean is clearly positive.
    kl = torch.tensor(sequence_kl(policy, other, tok, prompts, tokens))
    assert kl.mean() > 3 * kl.std() / len(kl) ** 0.5


def test_evaluate_reports_gold_and_kl(tmp_path):
    tok = train_tokenizer(build_corpus(300, seed=0), vocab_size=300)
    _model(tok, 0).save_pretrained(tmp_path / "p")
    tok.save_pretrained(tmp_path / "p")
    cfg = EvalArgs(model_path=str(tmp_path / "p"), reference_path=str(tmp_path / "p"), n_prompts=8,
                   max_new_tokens=5, output_file=str(tmp_path / "eval.json"))  # fmt: skip
    result = evaluate_policy(cfg)
    assert -1.0 <= result["gold_mean"] <= 1.0
    assert result["kl_per_sequence"] == pytest.approx(0.0, abs=1e-5)
    assert (tmp_path / "eval.json").is_file() and len(result["samples"]) == 8
