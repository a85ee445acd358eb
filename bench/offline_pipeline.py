"""Benchmark of the offline pipeline stages before PPO, from a cold cache.

Times SFT on the review corpus, the reward model (pairs + RewardTrainer, several seeds, with
held-out pairwise accuracy), SFT on arithmetic and its held-out exact-match accuracy, and the
gold score of SFT samples; writes JSON and prints a markdown table.

    python bench/offline_pipeline.py --seeds 0 1 2 --threads 1 --out results/offline_pipeline.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from rlhf_pg.stages.evaluate import EvalArgs, run_evaluation
from rlhf_pg.stages.reward_model import RewardModelArgs, train_reward_model
from rlhf_pg.stages.sft import SFTArgs, train_sft
from rlhf_pg.utils.config import config_from_dict, load_yaml_config
from rlhf_pg.utils.io import atomic_write_json

CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "configs"


def _cfg(cls, name: str, **overrides):
    return config_from_dict(cls, {**load_yaml_config(CONFIGS / name, cls), **overrides}, name)


def _timed(fn, cfg):
    start = time.perf_counter()
    path = fn(cfg)
    return path, time.perf_counter() - start


def _spread(values: list[float]) -> dict:
    return {
        "values": values,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="reward-model seeds"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--cache", default=None, help="cache folder (default: a fresh temporary one)"
    )
    parser.add_argument("--skip-arithmetic", action="store_true")
    parser.add_argument("--out", default="results/offline_pipeline.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache = args.cache or tempfile.mkdtemp(prefix="rlhf-pg-bench-")
    common = {"cache_dir": cache, "progress": False}
    result: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
        "cache": cache,
    }

    sft_path, result["sft_seconds"] = _timed(
        train_sft, _cfg(SFTArgs, "sft_sentiment.yaml", **common)
    )
    sft_metrics = json.loads((sft_path / "sft_metrics.json").read_text())
    result["sft_eval_loss"] = [sft_metrics["eval_loss_before"], sft_metrics["eval_loss_after"]]
    result["sft_num_parameters"] = sft_metrics["num_parameters"]
    result["sft_train_seconds"] = sft_metrics["train_seconds"]  # also right on a cache hit
    sft_eval = run_evaluation(_cfg(EvalArgs, "eval_sentiment.yaml", model_path=str(sft_path)))
    result["sft_gold_mean"] = sft_eval["gold_mean"]
    result["sft_gold_positive_fraction"] = sft_eval["gold_positive"]
    result["sft_samples"] = sft_eval["samples"]

    rm_seconds, rm_acc = [], []
    for seed in args.seeds:
        rm_cfg = _cfg(
            RewardModelArgs, "rm_sentiment.yaml", sft_path=str(sft_path), seed=seed, **common
        )
        rm_path, seconds = _timed(train_reward_model, rm_cfg)
        metrics = json.loads((rm_path / "reward_metrics.json").read_text())
        rm_seconds.append(seconds)
        rm_acc.append(metrics["heldout_pairwise_accuracy"])
        result.setdefault("rm_pairs", []).append(
            [metrics["n_train_pairs"], metrics["n_heldout_pairs"]]
        )
        result.setdefault("rm_data_seconds", []).append(metrics["data_seconds"])
        result.setdefault("rm_train_seconds", []).append(metrics["train_seconds"])
    result["rm_seconds"] = _spread(rm_seconds)
    result["rm_heldout_accuracy"] = _spread(rm_acc)

    if not args.skip_arithmetic:
        ar_path, result["arith_sft_seconds"] = _timed(
            train_sft, _cfg(SFTArgs, "sft_arithmetic.yaml", **common)
        )
        # one evaluation gives both: greedy accuracy and the accuracy of samples at T=1
        ar_eval = run_evaluation(
            _cfg(EvalArgs, "eval_arithmetic.yaml", model_path=str(ar_path), temperature=1.0)
        )
        result["arith_sft_heldout_accuracy_greedy"] = ar_eval["accuracy"]
        result["arith_sft_heldout_accuracy_sampled_t1"] = ar_eval["accuracy_sampled"]

    atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "sft_samples"}, indent=2))


if __name__ == "__main__":
    main()
