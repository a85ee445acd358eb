"""Reward model: TRL RewardTrainer on gold-labelled pairs beats chance on held-out pairs."""

import json

import pytest
import torch
from datasets import Dataset
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification

from rlhf_pg.hf.scoring import RewardModel
from rlhf_pg.stages.reward_model import (
    RewardModelArgs,
    generate_preferences,
    make_preference_pairs,
    train_reward_model,
)
from rlhf_pg.stages.sft import SFTArgs, train_sft
from rlhf_pg.tasks.gold import score_gold
from rlhf_pg.tasks.reviews import build_corpus


@pytest.fixture(scope="module")
def tiny_sft(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = SFTArgs(
        max_steps=40,
        batch_size=16,
        warmup_steps=5,
        n_layer=1,
        n_head=2,
        n_embd=32,
        n_positions=64,
        corpus_size=1500,
        progress=False,
        output_dir=str(tmp_path_factory.mktemp("sft") / "m"),
    )
    return train_sft(cfg)


def test_pairs_put_the_higher_gold_score_first_and_drop_near_ties():
    data = make_preference_pairs(
        ["p", "q", "r"], ["a", "b", "c"], ["x", "y", "z"], [0.9, -0.2, 0.5], [0.1, 0.6, 0.52], 0.1
    )
    assert data["chosen"] == ["a", "y"] and data["rejected"] == ["x", "b"]
    assert all(c > r for c, r in zip(data["gold_chosen"], data["gold_rejected"]))


@pytest.mark.slow
def test_generated_preferences_come_from_the_sft_model(tiny_sft):
    data = generate_preferences(
        RewardModelArgs(sft_path=str(tiny_sft), n_prompts=24, max_new_tokens=12, progress=False)
    )
    assert set(data.column_names) >= {"prompt", "chosen", "rejected"}
    assert len(data) > 0
    for row in data:
        gold_c, gold_r = score_gold(
            [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]
        )
        assert gold_c >= gold_r + 0.1


@pytest.mark.slow
def test_reward_model_learns_gold_preferences_well_above_chance(tiny_sft, tmp_path):
    torch.set_num_threads(1)
    texts = build_corpus(1200, seed=7)
    scores = score_gold(texts)
    pairs = make_preference_pairs(
        [""] * 600, texts[:600], texts[600:], scores[:600], scores[600:], 0.3
    )
    data_dir = tmp_path / "prefs"
    Dataset.from_dict({"chosen": pairs["chosen"], "rejected": pairs["rejected"]}).save_to_disk(
        str(data_dir)
    )
    cfg = RewardModelArgs(
        preference_dataset=str(data_dir),
        model_name_or_path=str(tiny_sft),
        learning_rate=2e-3,
        num_train_epochs=5.0,
        batch_size=16,
        eval_fraction=0.25,
        output_dir=str(tmp_path / "rm"),
        progress=False,
    )
    path = train_reward_model(cfg)
    metrics = json.loads((path / "reward_metrics.json").read_text())
    assert metrics["heldout_pairwise_accuracy"] > 0.75, metrics["heldout_pairwise_accuracy"]
    card = ModelCard.load(path / "README.md")
    assert "reward-model" in card.data.tags and str(data_dir) in card.text
    assert f"heldout_pairwise_accuracy | {metrics['heldout_pairwise_accuracy']:.4g} |" in card.text

    model = AutoModelForSequenceClassification.from_pretrained(path)
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None
    scorer = RewardModel.from_pretrained(path)
    normalised = scorer.score_texts(list(pairs["chosen"]) + list(pairs["rejected"]))
    assert abs(sum(normalised) / len(normalised)) < 0.2
    good, bad = scorer(["The film was"] * 2, [" wonderful and beautiful.", " awful and boring."])
    assert good > bad
    # Padding must not move a score: a batch of unequal lengths scores as each text alone.
    texts = ["The film was great.", "I watched this movie last night and it was awful. Skip it."]
    alone = [scorer.score_texts([t])[0] for t in texts]
    assert scorer.score_texts(texts) == pytest.approx(alone, abs=1e-4)
