"""docs/migrating-from-trl.md: every rlhf-pg snippet in it is a file under examples/ (shown
verbatim) or a recipe YAML, and each one runs here on the tiny model fixtures."""

import json
import re
import runpy
from pathlib import Path

import pytest
import torch
from model_families import make_tokenizer, save_family
from transformers import GPT2Config, GPT2ForSequenceClassification

from rlhf_pg.stages.ppo_args import parse_ppo_args

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "migrating-from-trl.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(GUIDE.read_text()) if lang == language]


def _ours(language: str, marker: str) -> dict[str, str]:
    """``{first-line marker: rest of the block}`` for the blocks that are ours."""
    out = {}
    for body in _blocks(language):
        first, _, rest = body.partition("\n")
        if first.startswith(marker):
            out[first[len(marker) :].strip()] = rest
    return out


def test_the_guides_python_of_ours_is_the_example_files_verbatim():
    shown = _ours("python", "# rlhf-pg: ")
    assert set(shown) == {"examples/grpo_rloo.py", "examples/ppo_value_head.py"}
    for name, text in shown.items():
        assert text == (ROOT / name).read_text(), f"{GUIDE.name} shows a stale {name}"


def test_the_guides_yaml_of_ours_parses_as_a_ppo_recipe_config(tmp_path):
    shown = _ours("yaml", "# rlhf-pg: recipes/ppo.py")
    assert len(shown) == 1
    path = tmp_path / "grpo.yaml"
    path.write_text(next(iter(shown.values())))
    args, config = parse_ppo_args(["--config", str(path), "--model_name_or_path", "gpt2"])
    assert config.estimator == "grpo" and config.samples_per_prompt == 8
    assert config.loss_aggregation == "seq-mean-token-sum" and config.clip_eps_high == 0.28


def test_the_guides_table_names_every_trl_name_we_accept():
    from rlhf_pg.lm import PPOConfig
    from rlhf_pg.stages.reward_model import RewardModelArgs
    from rlhf_pg.stages.sft import SFTArgs

    text = GUIDE.read_text()
    for cls in (PPOConfig, SFTArgs, RewardModelArgs):
        for name, alias in cls.TRL_NAMES.items():
            assert f"`{name}`" in text and f"`{alias.field}`" in text, (cls.__name__, name)
    for name in PPOConfig.TRL_UNSUPPORTED:
        assert f"`{name}`" in text, name


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    rows = ["the movie was", "what is twelve plus seven", "i loved the", "the film was"]
    path.write_text("\n".join(json.dumps({"prompt": p}) for p in rows))
    return path


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_grpo_rloo_example_runs(tmp_path, prompts_file, estimator):
    torch.set_num_threads(1)
    model = save_family("qwen2", tmp_path / "qwen2")
    main = runpy.run_path(str(ROOT / "examples" / "grpo_rloo.py"))["main"]
    out = tmp_path / "run"
    main(["--model", str(model), "--dataset", str(prompts_file), "--estimator", estimator,
          "--max_steps", "1", "--output_dir", str(out)])  # fmt: skip
    assert (out / "policy" / "model.safetensors").is_file()
    assert "## Training configuration" in (out / "policy" / "README.md").read_text()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_ppo_value_head_example_runs(tmp_path, prompts_file, monkeypatch, capsys):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)  # it saves under runs/
    model = save_family("gpt2", tmp_path / "gpt2")
    tok = make_tokenizer("gpt2")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                     num_labels=2, pad_token_id=tok.eos_token_id)  # fmt: skip
    GPT2ForSequenceClassification(cfg).save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    main = runpy.run_path(str(ROOT / "examples" / "ppo_value_head.py"))["main"]
    main(["--model", str(model), "--reward_model", str(tmp_path / "rm"),
          "--reward_label", "LABEL_1", "--dataset", str(prompts_file), "--max_steps", "2"])  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines[-2:]] == ["0", "1"] and "reward" in lines[-1]
    assert (tmp_path / "runs" / "ppo-example" / "policy").is_dir()


def test_sft_dataset_example_runs(tmp_path):
    torch.set_num_threads(1)
    model = save_family("qwen2", tmp_path / "qwen2")
    data = tmp_path / "chat.jsonl"
    conv = [{"role": "user", "content": "what is twelve plus seven"},
            {"role": "assistant", "content": "nineteen"}]  # fmt: skip
    data.write_text("\n".join(json.dumps({"messages": conv}) for _ in range(10)))
    main = runpy.run_path(str(ROOT / "examples" / "sft_dataset.py"))["main"]
    main(["--model", str(model), "--dataset", str(data), "--max_steps", "1",
          "--output_dir", str(tmp_path / "sft")])  # fmt: skip
    assert (tmp_path / "sft" / "README.md").is_file()
