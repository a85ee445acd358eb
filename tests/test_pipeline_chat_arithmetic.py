"""``rlhf-pg demo --task chat-arithmetic`` wired end to end at tiny sizes (a few SFT steps,
one step of each estimator): a Qwen2 SFT model with the ChatML template, GRPO / RLOO / PPO
rewarded by the answer column, the report; and its bad-input cases. Whether RL learns is
measured in docs/benchmarks.md, not here."""

import json
import runpy
from pathlib import Path

import pytest
import yaml
from PIL import Image
from transformers import AutoConfig, AutoTokenizer

from rlhf_pg.cli import main as cli_main
from rlhf_pg.demo.pipeline import DemoConfig, rl_args, sft_args
from rlhf_pg.tasks import chat_arithmetic as ca

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
TINY_RL = {
    "max_steps": 1,
    "batch_size": 4,
    "num_prompts": 16,
    "num_eval_prompts": 6,
    "eval_samples": 2,
    "eval_every": 1,
}
TINY_CHAT_DEMO = {
    "task": "chat-arithmetic",
    "num_threads": 1,
    "progress": False,
    "sft": {
        "corpus_size": 300, "n_layer": 1, "n_head": 2, "n_embd": 32, "max_steps": 4,
        "warmup_steps": 1, "batch_size": 16,
    },
    "grpo": TINY_RL,
    "rloo": TINY_RL,
    "ppo": {**TINY_RL, "samples_per_prompt": 1},
}  # fmt: skip


@pytest.mark.slow
def test_chat_demo_runs_sft_then_each_estimator_on_the_answer_column(tmp_path):
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(TINY_CHAT_DEMO))
    out, cache = tmp_path / "demo", tmp_path / "cache"
    argv = ["demo", "--config", str(config), "--out", str(out), "--cache-dir", str(cache)]
    assert cli_main(argv) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["estimators"]) == {"grpo", "rloo", "ppo"}
    sft_path = Path(summary["stages"]["grpo"]["model_name_or_path"])
    assert sft_path.parent == cache  # the SFT model went to the cache
    assert AutoConfig.from_pretrained(sft_path).model_type == "qwen2"
    tokenizer = AutoTokenizer.from_pretrained(sft_path)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
    held_out = {r["prompt"][0]["content"]: r["answer"] for r in ca.problem_rows("held_out")[:6]}

    for name in ("grpo", "rloo", "ppo"):
        results = json.loads((out / name / "ppo_results.json").read_text())
        assert results["args"]["estimator"] == name
        assert results["args"]["model_name_or_path"] == str(sft_path)
        (step,) = results["history"]
        # the answer-column exact match is the whole reward
        assert step["score/mean"] == pytest.approx(step["reward/answer_exact_match"])
        assert [e["step"] for e in results["evals"]] == [0, 1]
        for e in results["evals"]:
            # held-out conversations, each greedy answer scored against its own answer
            for row in e["samples"]:
                (user,) = row["prompt"]  # the conversation, as the dataset holds it
                right = ca.parse_answer(row["completion"]) == held_out[user["content"]]
                assert row["correct"] == right
            # the reward on the sampled held-out answers is their exact-match accuracy
            assert e["proxy"] == pytest.approx(e["accuracy_sampled"])
        assert (out / name / "policy" / "config.json").is_file()
        card = (out / name / "policy" / "README.md").read_text()  # with the demo's report
        assert "rlhf-pg demo report: chat arithmetic" in card and f"| {name} | 1 x " in card

    # the evaluate recipe on a trained policy: the same held-out questions, the same greedy
    # answers as the PPO stage's last evaluation
    evaluate = runpy.run_path(str(RECIPES / "evaluate.py"))["main"]
    config = str(RECIPES / "configs" / "eval_chat_arithmetic.yaml")
    policy, result_file = out / "rloo" / "policy", tmp_path / "eval.json"
    argv = ["--config", config, "--model_path", str(policy), "--n_prompts", "6"]
    assert evaluate(argv + ["--output_file", str(result_file)]) == 0
    evaluated = json.loads(result_file.read_text())
    last = json.loads((out / "rloo" / "ppo_results.json").read_text())["evals"][-1]
    assert evaluated["accuracy"] == last["accuracy"]
    assert evaluated["samples"] == last["samples"]

    # the same rows as a user's dataset on disk (task: dataset, the built-in reward by name):
    # the same run as the built-in task, step for step
    data = tmp_path / "data"
    data.mkdir()
    for split, rows in (("train", ca.problem_rows("train")), ("test", ca.problem_rows("held_out"))):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ppo = runpy.run_path(str(RECIPES / "ppo.py"))["main"]
    flags = [f"--{k}={v}" for k, v in TINY_RL.items()]
    argv = ["--config", str(RECIPES / "configs" / "grpo_chat_arithmetic.yaml"), *flags]
    argv += ["--task", "dataset", "--dataset_name", str(data)]
    argv += ["--seed", "0", "--model_name_or_path", str(sft_path), "--progress_bar", "false"]
    argv += ["--output_dir", str(tmp_path / "from_file"), "--save_policy", "false"]
    assert ppo(argv + ["--dataset_test_split", "test"]) == 0
    from_file = json.loads((tmp_path / "from_file" / "ppo_results.json").read_text())
    built_in = json.loads((out / "grpo" / "ppo_results.json").read_text())
    for key in ("score/mean", "kl/seq", "loss/policy", "reward/answer_exact_match"):
        assert from_file["history"][0][key] == built_in["history"][0][key], key
    assert from_file["evals"][-1]["proxy"] == built_in["evals"][-1]["proxy"]

    report = (out / "report.md").read_text()
    for name in ("grpo", "rloo", "ppo"):
        assert f"| {name} | 1 x " in report
    assert Image.open(out / "accuracy.png").format == "PNG"


def test_chat_demo_stages_are_the_recipe_yamls_plus_run_level_settings(tmp_path):
    cfg = DemoConfig(task="chat-arithmetic", out=str(tmp_path / "d"), seed=4)
    configs = RECIPES / "configs"
    sft = sft_args(cfg)
    for key, value in yaml.safe_load((configs / "sft_chat_arithmetic.yaml").read_text()).items():
        assert getattr(sft, key) == (4 if key == "seed" else value), key
    for name in ("grpo", "rloo", "ppo"):
        args, config = rl_args(cfg, name, Path("sft-dir"))
        run_level = {
            "model_name_or_path": "sft-dir",
            "seed": 4,
            "output_dir": str(tmp_path / "d" / name),
        }
        path = configs / f"{name}_chat_arithmetic.yaml"
        for key, value in yaml.safe_load(path.read_text()).items():
            got = getattr(args, key) if hasattr(args, key) else getattr(config, key)
            assert got == run_level.get(key, value), (name, key)
        assert args.task == "chat_arithmetic" and args.reward_fn == "answer_exact_match"
        assert config.estimator == name


def test_chat_demo_rejects_bad_input_in_one_line_before_any_stage(tmp_path, capsys, monkeypatch):
    import rlhf_pg.demo.pipeline

    monkeypatch.setattr(rlhf_pg.demo.pipeline, "run_demo", lambda cfg: pytest.fail("demo ran"))
    bad = tmp_path / "demo.yaml"
    cases = [
        ("reward_model: {n_prompts: 3}\n", "task 'chat-arithmetic' has no reward_model stage"),
        ("estimators: [grpo, dpo]\n", "estimators=['grpo', 'dpo'] must be distinct names"),
        ("grpo: {samples_per_prompt: 1}\n", "needs samples_per_prompt >= 2"),
        ("sft: {carry_slip: 1.5}\n", "carry_slip=1.5 must be in [0, 1]"),
    ]
    for text, message in cases:
        bad.write_text(text)
        argv = ["demo", "--task", "chat-arithmetic", "--config", str(bad)]
        assert cli_main(argv + ["--out", str(tmp_path / "o")]) == 2, text
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("rlhf-pg: error: ") and message in line, (text, line)
    # the sentiment demo has no grpo stage
    bad.write_text("grpo: {max_steps: 1}\n")
    assert cli_main(["demo", "--config", str(bad)]) == 2
    assert "task 'sentiment' has no grpo stage" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["demo", "--task", "chat_arithmetic"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'chat_arithmetic'" in capsys.readouterr().err
