"""Smoke test of the LM side-by-side benchmark (bench/lm_vs_trl.py) with a tiny budget.

The TRL 1.12 side needs its own virtualenv and is not run here; ours and TRL 1.16 run one
tiny trainer each through the very runner script the benchmark uses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import lm_bench_report as report  # noqa: E402
from lm_vs_trl import summarize_speed  # noqa: E402


def _speed_rows(completions_per_s: float, rss: float) -> list[dict]:
    return [{"s_per_step": 64 / completions_per_s, "completions_per_s": completions_per_s,
             "tokens_per_s": 32 * completions_per_s, "peak_rss_mb": rss}]  # fmt: skip


def test_ratio_lines_flag_a_missed_target():
    runs = {
        "ours-ppo": _speed_rows(50.0, 500.0),  # 2x, target 3x
        "trl112-ppo": _speed_rows(25.0, 1000.0),
        "ours-rloo": _speed_rows(110.0, 500.0),  # 1.375x, target 1.5x
        "trl116-rloo": _speed_rows(80.0, 800.0),
    }
    lines = report.ratio_lines(runs)
    ppo = next(line for line in lines if line.startswith("| ours-ppo"))
    rloo = next(line for line in lines if line.startswith("| ours-rloo"))
    assert "| 2.00x | >= 3.0x | **no** | 0.50 |" in ppo
    assert "| 1.38x | >= 1.5x | **no** |" in rloo
    assert not any("ours-grpo" in line for line in lines)  # no TRL run to compare with


def test_speed_table_shows_tokens_per_completion():
    runs = {"ours-grpo": _speed_rows(100.0, 500.0)}
    runs["ours-grpo"][0]["tokens_per_s"] = 1300.0  # 13 tokens per completion (EOS included)
    row = next(line for line in report.speed_table(runs) if line.startswith("| ours GRPO"))
    assert "| 100.0 | 1300 | 13.0 | 500 |" in row


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ours-generation-threads", "-1"], "--ours-generation-threads must be >= 0"),
        (["--model", "gpt4"], "argument --model: invalid choice: 'gpt4'"),
        (["--batch-size", "6"], "--batch-size must be a multiple of 4"),
    ],
)
def test_bad_bench_arguments_exit_2_before_any_work(tmp_path, args, message):
    cmd = [sys.executable, str(ROOT / "bench" / "lm_vs_trl.py"), *args, "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_gold_at_kl_interpolates_inside_the_curve_only():
    curve = [{"kl": 0.0, "gold": 0.0}, {"kl": 2.0, "gold": 0.4}, {"kl": 4.0, "gold": 0.5}]
    assert report.gold_at_kl(curve, 1.0) == pytest.approx(0.2)
    assert report.gold_at_kl(curve, 3.0) == pytest.approx(0.45)
    assert report.gold_at_kl(curve, 5.0) is None


def test_frontier_reads_each_seed_then_averages_the_seeds_that_reach_a_kl():
    def evals(points):
        return {"evals": [{"step": i, "kl": k, "gold": g} for i, (k, g) in enumerate(points)]}

    learn = {  # seed 0 reaches KL 4, seed 1 stops at 2
        "ours-ppo/seed0": evals([(0.0, 0.0), (4.0, 0.8)]),
        "ours-ppo/seed1": evals([(0.0, 0.2), (2.0, 0.6)]),
    }
    row = next(line for line in report.frontier_lines(learn, (2.0, 4.0, 6.0)) if "ours" in line)
    # KL 2: seed 0 reads 0.4 on its own line, seed 1 0.6 -> mean 0.5 (a seed-averaged curve
    # would mix the seeds' KLs); KL 4: only seed 0; KL 6: nobody
    assert "+0.500 (+0.400..+0.600, n=2)" in row
    assert "+0.800 (+0.800..+0.800, n=1)" in row
    assert row.rstrip().endswith("| - |")


def test_runner_overrides_and_early_saves():
    from argparse import Namespace

    from lm_bench_runners import parse_overrides, save_due

    assert parse_overrides(["vf_coef=0.5", "value_head_detach=true", "kl_estimator=k3"]) == {
        "vf_coef": 0.5,
        "value_head_detach": True,
        "kl_estimator": "k3",
    }
    with pytest.raises(SystemExit, match="key=value"):
        parse_overrides(["vf_coef"])
    args = Namespace(save_every=5, save_early=2)
    assert [s for s in range(1, 12) if save_due(args, s)] == [1, 2, 5, 10]
    assert not any(save_due(Namespace(save_every=0, save_early=2), s) for s in range(1, 4))


def test_summarize_speed_drops_warmup_and_takes_medians():
    result = {
        "step_seconds": [10.0, 1.0, 2.0, 4.0],
        "step_tokens": [64.0, 64.0, 64.0, 64.0],
        "completions_per_step": 8,
        "peak_rss_mb": 123.0,
        "versions": {},
        "logs": [{}] * 4,
    }
    row = summarize_speed(result, warmup=1)
    assert row["s_per_step"] == 2.0
    assert row["completions_per_s"] == 4.0
    assert row["tokens_per_s"] == 32.0
    assert "phases" not in row


def _tiny_setup(tmp: Path) -> dict[str, str]:
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    from rlhf_pg.tasks import build_corpus, train_tokenizer

    texts = build_corpus(300, seed=0)
    tok = train_tokenizer(texts, vocab_size=300)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                     eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id, num_labels=1)  # fmt: skip
    for cls, name in ((GPT2LMHeadModel, "policy"), (GPT2ForSequenceClassification, "reward")):
        cls(cfg).save_pretrained(tmp / name)
        tok.save_pretrained(tmp / name)
    (tmp / "prompts.json").write_text(json.dumps([" ".join(t.split()[:4]) for t in texts[:32]]))
    return {"policy": str(tmp / "policy"), "reward": str(tmp / "reward"),
            "prompts": str(tmp / "prompts.json")}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["ours-grpo", "trl116-rloo"])
def test_runner_times_each_step_of_a_tiny_run(tmp_path, trainer):
    paths = _tiny_setup(tmp_path)
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(ROOT / "bench" / "lm_bench_runners.py"), "--trainer", trainer,
           "--policy", paths["policy"], "--reward", paths["reward"], "--prompts", paths["prompts"],
           "--steps", "2", "--batch-size", "8", "--response-length", "4", "--threads", "1",
           "--out", str(out), "--save-every", "2", "--save-dir", str(tmp_path / "ckpt")]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=120)
    result = json.loads(out.read_text())
    assert len(result["step_seconds"]) == 2 and min(result["step_seconds"]) > 0
    assert len(result["step_tokens"]) == 2 and all(0 < t <= 8 * 4 for t in result["step_tokens"])
    assert result["peak_rss_mb"] > 50
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step-0000", "step-0002"]
