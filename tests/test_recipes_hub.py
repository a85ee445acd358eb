"""The hub setup (gpt2 + IMDB + a sentiment classifier) through the same from_pretrained /
load_dataset calls, run against tiny local stand-ins saved to disk."""

import json
import runpy
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from rlhf_pg.data.reviews import build_corpus
from rlhf_pg.data.tokenizer import train_tokenizer
from rlhf_pg.reward_scoring import ClassifierReward

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _gpt2_like_tokenizer(texts):
    """Like the hub's gpt2 tokenizer: EOS but no pad token, right padding."""
    trained = train_tokenizer(texts, vocab_size=400)
    return PreTrainedTokenizerFast(
        tokenizer_object=trained.backend_tokenizer, eos_token="<|endoftext|>"
    )


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    texts = build_corpus(300, seed=2)
    tok = _gpt2_like_tokenizer(texts)
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(root / "gpt2")
    tok.save_pretrained(root / "gpt2")
    Dataset.from_dict({"text": texts, "label": [0] * len(texts)}).save_to_disk(str(root / "imdb"))
    clf_config = GPT2Config(
        vocab_size=len(tok),
        n_positions=64,
        n_embd=32,
        n_layer=1,
        n_head=2,
        num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
        pad_token_id=tok.eos_token_id,
    )
    GPT2ForSequenceClassification(clf_config).save_pretrained(root / "classifier")
    tok.save_pretrained(root / "classifier")
    return root


@pytest.mark.slow
def test_gpt2_imdb_sft_recipe_runs_one_step_on_stand_ins(stand_ins, tmp_path):
    torch.set_num_threads(1)
    main = runpy.run_path(str(RECIPES / "sft.py"))["main"]
    out = tmp_path / "sft"
    argv = [
        "--config",
        str(RECIPES / "configs" / "sft_gpt2_imdb.yaml"),
        "--model_name_or_path",
        str(stand_ins / "gpt2"),
        "--dataset_name",
        str(stand_ins / "imdb"),
        "--num_steps",
        "1",
        "--batch_size",
        "4",
        "--max_length",
        "32",
        "--output_dir",
        str(out),
        "--no_progress",
    ]
    assert main(argv) == 0
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    # The stand-in, like gpt2, had no pad token: one was added, distinct from EOS, embeddings grown.
    assert tok.pad_token is not None and tok.pad_token_id != tok.eos_token_id
    assert model.get_input_embeddings().num_embeddings == len(tok)
    assert tok.padding_side == "left"
    metrics = json.loads((out / "sft_metrics.json").read_text())
    assert len(metrics["history"]) == 1


def test_classifier_reward_reads_the_named_label(stand_ins):
    reward = ClassifierReward(stand_ins / "classifier", label="POSITIVE")
    prompts, completions = ["The film was", "I watched it"], [" great.", " and it was bad."]
    scores = reward(prompts, completions)
    model, tok = reward.model, reward.tokenizer
    for text, score in zip([p + c for p, c in zip(prompts, completions)], scores):
        with torch.no_grad():
            logits = model(**tok(text, return_tensors="pt")).logits
        assert score == pytest.approx(float(logits[0, 1]), abs=1e-5)
    with pytest.raises(
        ValueError, match=r"label 'LABEL_1' is not a label .*\['NEGATIVE', 'POSITIVE'\]"
    ):
        ClassifierReward(stand_ins / "classifier", label="LABEL_1")
