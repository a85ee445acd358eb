"""The gpt2-imdb recipe (hub names in recipes/configs/ppo_gpt2_imdb.yaml) runs one PPO step
with tiny local stand-ins for gpt2, the IMDB dataset and the sentiment classifier, loaded
through the same from_pretrained / load_dataset calls as the hub names."""

import json
import runpy
from pathlib import Path

import pytest
from datasets import Dataset
from hub_stand_ins import gpt2_like_tokenizer, save_bert_classifier, save_gpt2
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_pg.tasks.reviews import build_corpus

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub_ppo")
    texts = build_corpus(200, seed=3)
    save_gpt2(root / "gpt2", gpt2_like_tokenizer(texts))
    Dataset.from_dict({"text": texts, "label": [0, 1] * 100}).save_to_disk(str(root / "imdb"))
    save_bert_classifier(root / "distilbert-imdb", texts)
    return root


@pytest.mark.slow
def test_gpt2_imdb_recipe_runs_one_step_on_local_stand_ins(stand_ins, tmp_path):
    main = runpy.run_path(str(RECIPES / "ppo.py"))["main"]
    out = tmp_path / "run"
    assert main([
        "--config", str(RECIPES / "configs" / "ppo_gpt2_imdb.yaml"),
        "--model_name_or_path", str(stand_ins / "gpt2"),
        "--dataset_name", str(stand_ins / "imdb"),
        "--reward_model_path", str(stand_ins / "distilbert-imdb"),
        "--max_steps", "1", "--batch_size", "4", "--num_minibatches", "2",
        "--num_prompts", "16", "--num_eval_prompts", "4", "--max_new_tokens", "6",
        "--bf16", "false", "--use_cpu", "true", "--progress_bar", "false",
        "--output_dir", str(out),
    ]) == 0  # fmt: skip
    results = json.loads((out / "ppo_results.json").read_text())
    (step,) = results["history"]
    assert step["step"] == 1 and "reward/classifier_POSITIVE" in step
    assert results["args"]["reward_model_label"] == "POSITIVE"
    assert [e["step"] for e in results["evals"]] == [0, 1]
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1
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
        "--reward_model_label", "LABEL_7", "--use_cpu", "true", "--bf16", "false",
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"'LABEL_7' is not a label .*\['NEGATIVE', 'POSITIVE'\]"):
        main(args)
