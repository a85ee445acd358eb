"""The hub setup (gpt2 + IMDB + a sentiment classifier) through the same from_pretrained /
load_dataset calls, run against tiny local stand-ins saved to disk."""

import json
import runpy
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from hub_stand_ins import gpt2_like_tokenizer, save_gpt2, save_gpt2_classifier
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_pg.hf.scoring import ClassifierReward
from rlhf_pg.tasks.reviews import build_corpus

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    texts = build_corpus(300, seed=2)
    tok = gpt2_like_tokenizer(texts)
    save_gpt2(root / "gpt2", tok)
    Dataset.from_dict({"text": texts, "label": [0] * len(texts)}).save_to_disk(str(root / "imdb"))
    save_gpt2_classifier(root / "classifier", tok)
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
        "--max_steps",
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
