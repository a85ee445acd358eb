"""Hub-style classifier rewards score the representation the classifier was trained on."""

from __future__ import annotations

import pytest
from hub_stand_ins import save_bert_classifier

from rlhf_pg.hf import ClassifierReward

TEXTS = ["the movie was great", "the plot was boring and the acting bad", "i loved it"]


def test_bert_classifier_reward_equals_the_transformers_pipeline(tmp_path):
    from transformers import pipeline

    path = tmp_path / "bert"
    save_bert_classifier(path, TEXTS)
    reward = ClassifierReward(path, label="POSITIVE")
    prompts, completions = (
        ["the movie", "the plot was", "i"],
        [" was great", " boring and the acting bad", " loved it"],
    )
    got = reward(prompts, completions)
    classify = pipeline("text-classification", model=str(path), device="cpu")
    for text, score in zip(TEXTS, got):
        out = classify(text, top_k=None, function_to_apply="none")  # raw logits, [CLS] ... [SEP]
        expected = next(o["score"] for o in out if o["label"] == "POSITIVE")
        assert score == pytest.approx(expected, abs=1e-5)
