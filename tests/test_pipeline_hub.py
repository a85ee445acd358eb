"""The gpt2-imdb recipe (hub names in recipes/configs/ppo_gpt2_imdb.yaml) runs one PPO step
with tiny local stand-ins for gpt2, the IMDB dataset and the sentiment classifier, loaded
through the same from_pretrained / load_dataset calls as the hub names."""

import json
import runpy
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from rlhf_pg.data.reviews import build_corpus
from rlhf_pg.data.tokenizer import train_tokenizer

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _bert_classifier(path: Path, texts: list[str]) -> None:
    """A 2-label BERT-style classifier with its own WordPiece vocabulary, like distilbert-imdb."""
    words = sorted({w.strip(".,!?").lower() for t in texts for w in t.split()} - {""})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?", *words]
    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub_ppo")
    texts = build_corpus(200, seed=3)
    # like the hub's gpt2 tokenizer: EOS, no pad token, right padding
    bpe = train_tokenizer(texts, vocab_size=400).backend_tokenizer
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(root / "gpt2")
    tok.save_pretrained(root / "gpt2")
    Dataset.from_dict({"text": texts, "label": [0, 1] * 100}).save_to_disk(str(root / "imdb"))
    _bert_classifier(root / "distilbert-imdb", texts)
    return root


@pytest.mark.slow
def test_gpt2_imdb_recipe_runs_one_step_on_local_stand_ins(stand_ins, tmp_path):
    main = runpy.run_path(str(RECIPES / "ppo.py"))["main"]
    out = tmp_path / "run"
    results = main([
        "--config", str(RECIPES / "configs" / "ppo_gpt2_imdb.yaml"),
        "--model_name_or_path", str(stand_ins / "gpt2"),
        "--dataset_name", str(stand_ins / "imdb"),
        "--reward_model_path", str(stand_ins / "distilbert-imdb"),
        "--total_steps", "1", "--batch_size", "4", "--num_minibatches", "2",
        "--num_prompts", "16", "--num_eval_prompts", "4", "--max_new_tokens", "6",
        "--bf16", "false", "--cpu", "true", "--progress_bar", "false",
        "--output_dir", str(out),
    ])  # fmt: skip
    (step,) = results["history"]
    assert step["step"] == 1 and "reward/classifier_POSITIVE" in step
    assert results["args"]["reward_model_label"] == "POSITIVE"
    assert [e["step"] for e in results["evals"]] == [0, 1]
    assert json.loads((out / "ppo_results.json").read_text())["history"][0]["step"] == 1
    # the trained policy loads back with plain transformers and generates
    tok = AutoTokenizer.from_pretrained(out / "policy")
    model = AutoModelForCausalLM.from_pretrained(out / "policy")
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    ids = tok(["I watched this movie"], return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 3


def test_gpt2_imdb_recipe_needs_the_classifier_label(stand_ins, tmp_path):
    main = runpy.run_path(str(RECIPES / "ppo.py"))["main"]
    args = [
        "--config", str(RECIPES / "configs" / "ppo_gpt2_imdb.yaml"),
        "--model_name_or_path", str(stand_ins / "gpt2"),
        "--dataset_name", str(stand_ins / "imdb"),
        "--reward_model_path", str(stand_ins / "distilbert-imdb"),
        "--reward_model_label", "LABEL_7", "--cpu", "true", "--bf16", "false",
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"'LABEL_7' is not a label .*\['NEGATIVE', 'POSITIVE'\]"):
        main(args)
