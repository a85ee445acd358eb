"""SFT: a few steps lower the loss; the result reloads with plain transformers; the cache is reused."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM, AutoTokenizer

import rlhf_pg.stages.sft
from rlhf_pg.hf.sampling import generate_completions
from rlhf_pg.stages.sft import SFTArgs, train_sft

TINY = {
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 32,
    "n_positions": 64,
    "corpus_size": 1500,
    "progress": False,
}


@pytest.mark.slow
def test_sft_lowers_loss_saves_and_caches(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    cfg = SFTArgs(
        max_steps=80,
        learning_rate=5e-3,
        batch_size=16,
        warmup_steps=5,
        cache_dir=str(tmp_path),
        **TINY,
    )
    path = train_sft(cfg)
    metrics = json.loads((path / "sft_metrics.json").read_text())
    assert metrics["eval_loss_after"] < 0.6 * metrics["eval_loss_before"]
    assert path.parent == tmp_path and path.name.startswith("sft-")
    # the model card: hub metadata, the data, every setting, the metrics of this run
    card = ModelCard.load(path / "README.md")
    assert "sft" in card.data.tags and card.data.base_model is None  # trained from scratch
    assert f"eval_loss_after | {metrics['eval_loss_after']:.4g} |" in card.text
    assert "learning_rate: 0.005" in card.text and "generated movie reviews" in card.text

    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert (
        tok.padding_side == "left"
        and model.config.pad_token_id == tok.pad_token_id != tok.eos_token_id
    )
    completions, _ = generate_completions(
        model, tok, ["I watched the film", "The plot"], max_new_tokens=8
    )
    assert len(completions) == 2 and all(isinstance(c, str) for c in completions)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr(rlhf_pg.stages.sft, "build_model", no_training)
    assert (
        train_sft(
            SFTArgs(
                max_steps=80,
                learning_rate=5e-3,
                batch_size=16,
                warmup_steps=5,
                cache_dir=str(tmp_path),
                **TINY,
            )
        )
        == path
    )


@pytest.mark.slow
def test_arithmetic_sft_runs_with_digit_tokens(tmp_path):
    torch.set_num_threads(1)
    cfg = SFTArgs(
        task="arithmetic",
        max_steps=30,
        max_length=16,
        vocab_size=300,
        output_dir=str(tmp_path / "m"),
        **TINY,
    )
    path = train_sft(cfg)
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.tokenize("12+7=19") == list("12+7=19")
    metrics = json.loads((path / "sft_metrics.json").read_text())
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]


@pytest.mark.slow
def test_two_cpu_processes_with_the_shipped_accelerate_config(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [
        str(accelerate), "launch", "--config_file", str(root / "recipes/accelerate/cpu_2proc.yaml"),
        str(root / "recipes/sft.py"), "--use_cpu", "true", "--max_steps", "3", "--batch_size", "4",
        "--corpus_size", "200", "--n_layer", "1", "--n_head", "2", "--n_embd", "16",
        "--output_dir", str(tmp_path / "m"), "--no_progress", "--num_threads", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "m" / "sft_metrics.json").read_text())
    assert metrics["num_processes"] == 2
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m").config.n_layer == 1
