"""LM benchmark side by side with TRL (issue 7): the same policy, prompts, batch and reward.

Trainers (each run in its own process, so peak RSS is its own):
  ours-ppo      rlhf_pg.lm PPO with a value head, 4 epochs x 1 minibatch, k1 KL in the reward
  ours-ppo-critic  the same with a separate critic initialised from the reward model (TRL's layout)
  ours-rloo     rlhf_pg.lm RLOO, 16 prompts x 4 samples, 1 epoch, k1 sequence KL in the reward
  ours-grpo     rlhf_pg.lm GRPO, 16 prompts x 4 samples, 1 epoch, k3 KL as a loss term
  trl112-ppo    TRL 1.12.0 trl.experimental.ppo.PPOTrainer (separate value + reward models),
                from its own virtualenv (created here on first use; TRL 1.13+ has no PPO)
  trl116-rloo   TRL 1.16 RLOOTrainer, 4 generations per prompt, beta = KL coefficient
  trl116-grpo   TRL 1.16 GRPOTrainer, 4 generations per prompt, beta = KL coefficient
  trl116-grpo-b0  the same with TRL's default beta = 0 (no reference model at all)

Part "speed": random-init GPT-2 (4 layers x 128 dim, offline default tokenizer), 512 prompts
of 8-16 tokens, 64 completions x 32 new tokens per step, temperature 1, fp32, a random-init
GPT-2 reward model; ``--repeats`` rounds, trainers interleaved within each round; per run
one warm-up step, then ``--steps`` timed steps (median). Tables show medians over rounds.
``--model sft`` times the same with the offline sentiment task's SFT policy and learned
reward model (the demo's cache, as the learn part), on 512 prompts of 8-16 tokens cut the
same way with its tokenizer: a policy that emits EOS, so responses end early. Every trainer
stops a response at EOS (ours: ``stop_token_ids`` empty = EOS; TRL 1.16: the tokenizer's
and the generation config's EOS; TRL 1.12 PPO: ``stop_token="eos"``) and stops decoding once
every response of the batch has ended. ``--ours-generation-threads`` (default 1) is our
trainers' ``generation_threads``: they decode on one thread, where per-token ops are too
small to split, and run the rest of the step on ``--threads``.
Part "learn": the offline sentiment task (SFT policy, learned reward model from the demo's
cache), ``--learn-steps`` steps per trainer; every ``--eval-every`` steps the policy is saved
and evaluated on held-out prompts by one evaluator (rlhf_pg.stages.evaluate): proxy reward,
gold (VADER) score and KL to the SFT reference; the plot shows reward against KL.

    python bench/lm_vs_trl.py                        # both parts, then tables + plot
    python bench/lm_vs_trl.py --part speed --repeats 3
    python bench/lm_vs_trl.py --part speed --model sft --out results/lm_vs_trl_sft
    python bench/lm_vs_trl.py --report               # tables + plot from saved results

Results go to ``<out>/results.json`` (atomic writes after every run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from lm_bench_report import write_report  # noqa: E402
from lm_bench_setup import build_learning_artifacts, build_speed_artifacts  # noqa: E402

from rlhf_pg.utils.io import atomic_write_json  # noqa: E402

TRAINERS = (
    "ours-ppo",
    "ours-ppo-critic",
    "ours-rloo",
    "ours-grpo",
    "trl112-ppo",
    "trl116-rloo",
    "trl116-grpo",
    "trl116-grpo-b0",
)
LEARN_TRAINERS = tuple(t for t in TRAINERS if t != "trl116-grpo-b0")
VENV = ROOT / "bench" / ".venv-trl112"
# a set that installs and imports together with TRL 1.12.0 (pip check clean)
TRL112_PINS = ["trl==1.12.0", "transformers==5.23.0", "accelerate==1.15.0", "datasets==5.2.0"]


def ensure_trl112_venv(venv: Path = VENV) -> Path:
    """The TRL 1.12 virtualenv's python, creating the venv on first use (never the project's)."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    base = getattr(sys, "_base_executable", sys.executable)
    print(f"creating {venv} (TRL 1.12.0 for its PPOTrainer) ...", file=sys.stderr)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    # torch first and pinned again below: a bare torch spec would pull a multi-GB CUDA build
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *TRL112_PINS, "torch==2.13.0"], check=True)
    return python


def run_trainer(name: str, paths: dict, steps: int, out: Path, args, **extra) -> dict:
    """One trainer in its own process; returns its result JSON."""
    if name == "trl112-ppo":
        cmd = [str(ensure_trl112_venv()), str(ROOT / "bench" / "trl112_ppo_runner.py")]
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "lm_bench_runners.py"), "--trainer", name]
    opts = {
        "policy": paths["policy"],
        "reward": paths["reward_trl112"] if name == "trl112-ppo" else paths["reward"],
        "prompts": paths["prompts"],
        "steps": steps,
        "out": out,
        "threads": args.threads,
        "batch-size": args.batch_size,
        "response-length": args.response_length,
        **extra,
    }
    for key, value in opts.items():
        if value is True:
            cmd.append(f"--{key}")
        elif isinstance(value, list):
            cmd += [f"--{key}", *map(str, value)]
        elif value is not False and value is not None:
            cmd += [f"--{key}", str(value)]
    if name.startswith("ours"):
        cmd += ["--generation-threads", str(args.ours_generation_threads)]
    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # this checkout's rlhf_pg, not whichever one the venv has installed (editable elsewhere)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    log = out.with_suffix(".log")
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}); see {log}")
    return json.loads(out.read_text())


def summarize_speed(result: dict, warmup: int) -> dict:
    """Medians over the timed steps of one run (the first ``warmup`` steps dropped)."""
    secs = result["step_seconds"][warmup:]
    toks = result["step_tokens"][warmup:]
    n = result["completions_per_step"]
    row = {
        "s_per_step": statistics.median(secs),
        "completions_per_s": statistics.median(n / s for s in secs),
        "tokens_per_s": statistics.median(t / s for t, s in zip(toks, secs)),
        "peak_rss_mb": result["peak_rss_mb"],
        "versions": result["versions"],
    }
    phases = ("time/generate", "time/forward", "time/reward", "time/update")
    logs = result["logs"][warmup:]
    if logs and all(p in logs[0] for p in phases):  # ours: where the step's time goes
        row["phases"] = {p.split("/")[1]: statistics.median(r[p] for r in logs) for p in phases}
    return row


def scaled_reward_copy(src: str, dst: Path) -> str:
    """The learned reward model with its normalisation scale (1 / reward_std) folded into the
    score head, for TRL 1.12 PPO, which reads raw logits (its score head has no bias, so the
    mean shift, a constant, is not folded in)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not (dst / "config.json").exists():
        model = AutoModelForSequenceClassification.from_pretrained(src)
        std = float(getattr(model.config, "reward_std", 1.0))
        model.score.weight.data /= std
        model.save_pretrained(dst)
        AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return str(dst)


def sft_speed_artifacts(out: Path) -> dict[str, str]:
    """The sentiment SFT policy and its learned reward model (the demo's cache) with 512
    prompts of 8-16 tokens cut as the random-init set-up's, with the SFT tokenizer."""
    from lm_bench_setup import speed_prompts
    from transformers import AutoTokenizer

    art = build_learning_artifacts()
    prompts = out / "speed-sft-prompts.json"
    if not prompts.exists():
        tokenizer = AutoTokenizer.from_pretrained(art["policy"])
        atomic_write_json(prompts, speed_prompts(tokenizer))
    return {"policy": art["policy"], "reward": art["reward"], "prompts": str(prompts)}


def speed_part(args, results: dict, save) -> None:
    if args.model == "sft":
        paths = sft_speed_artifacts(args.out)
    else:
        paths = build_speed_artifacts(args.out / "speed-setup")
    paths["reward_trl112"] = paths["reward"]
    results["speed_model"] = args.model
    runs = results.setdefault("speed_runs", {})
    for round_ in range(args.repeats):  # interleaved, so load drift hits every trainer alike
        for name in args.trainers:
            out = args.out / "runs" / f"speed-{name}-{round_}.json"
            start = time.perf_counter()
            res = run_trainer(name, paths, args.warmup + args.steps, out, args, lr=1e-4)
            runs.setdefault(name, []).append(
                {**summarize_speed(res, args.warmup), "load_avg": os.getloadavg()[0]}
            )
            last = runs[name][-1]
            print(
                f"[speed {round_ + 1}/{args.repeats}] {name}: {last['s_per_step']:.2f} s/step, "
                f"{last['completions_per_s']:.1f} completions/s, {last['peak_rss_mb']:.0f} MB "
                f"({time.perf_counter() - start:.0f} s)",
                file=sys.stderr,
            )
            save()


def evaluate_checkpoints(save_dir: Path, art: dict, args) -> list[dict]:
    """Held-out proxy reward, gold score and KL to the SFT reference of every saved policy."""
    from rlhf_pg.stages.evaluate import EvalArgs, run_evaluation

    evals = []
    for ckpt in sorted(save_dir.glob("step-*")):
        ev = run_evaluation(
            EvalArgs(
                model_path=str(ckpt),
                reference_path=art["policy"],
                reward_model_path=art["reward"],
                n_prompts=args.eval_prompts,
                max_new_tokens=args.response_length,
                num_threads=args.threads,
            )
        )
        evals.append(
            {
                "step": int(ckpt.name.split("-")[1]),
                "proxy": ev["proxy"],
                "gold": ev["gold_mean"],
                "gold_positive": ev["gold_positive"],
                "kl": ev["kl_seq"],
            }
        )
    return evals


def learn_part(args, results: dict, save) -> None:
    from lm_bench_setup import learning_prompts

    art = build_learning_artifacts()
    train, _ = learning_prompts()
    prompts = args.out / "learn-prompts.json"
    prompts.write_text(json.dumps(train))
    paths = {
        "policy": art["policy"],
        "reward": art["reward"],
        "reward_trl112": scaled_reward_copy(art["reward"], args.out / "reward-trl112"),
        "prompts": str(prompts),
    }
    learn = results.setdefault("learn", {})
    results["learn_setup"] = {
        "policy": art["policy"],
        "reward": art["reward"],
        "steps": args.learn_steps,
        "lr": args.learn_lr,
        "kl_coef": args.kl_coef,
        "eval_prompts": args.eval_prompts,
    }
    for seed in args.seeds:
        for name in [t for t in args.trainers if t in LEARN_TRAINERS]:
            label = f"{name}[{args.tag}]" if args.tag else name  # a variant of the trainer
            key = f"{label}/seed{seed}"
            save_dir = args.out / "learn" / label / f"seed{seed}"
            if key in learn:  # kept by --resume
                if args.reeval:
                    learn[key]["evals"] = evaluate_checkpoints(save_dir, art, args)
                    save()
                continue
            start = time.perf_counter()
            res = run_trainer(
                name,
                paths,
                args.learn_steps,
                args.out / "runs" / f"learn-{label}-{seed}.json",
                args,
                lr=args.learn_lr,
                seed=seed,
                **{
                    "kl-coef": args.kl_coef,
                    "save-every": args.eval_every,
                    "save-early": args.eval_early,
                    "save-dir": save_dir,
                },
                learn=name != "trl112-ppo",
                set=args.ours_set if args.ours_set and name.startswith("ours") else None,
                # TRL's critic: the RM with the normalisation scale folded in (values in the
                # scorer's units) rather than the raw RM
                critic=paths["reward_trl112"]
                if args.critic_scaled and name == "ours-ppo-critic"
                else None,
            )
            evals = evaluate_checkpoints(save_dir, art, args)
            learn[key] = {"evals": evals, "train_seconds": sum(res["step_seconds"])}
            e = evals[-1]
            print(
                f"[learn] {key}: proxy {e['proxy']:+.3f} gold {e['gold']:+.3f} KL {e['kl']:.2f} "
                f"({time.perf_counter() - start:.0f} s)",
                file=sys.stderr,
            )
            save()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("speed", "learn", "all"), default="all")
    p.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS))
    p.add_argument("--repeats", type=int, default=3, help="speed: interleaved rounds")
    p.add_argument("--warmup", type=int, default=1, help="speed: untimed first steps per run")
    p.add_argument("--steps", type=int, default=3, help="speed: timed steps per run")
    p.add_argument("--threads", type=int, default=2, help="torch threads per trainer")
    p.add_argument(
        "--model",
        choices=("random", "sft"),
        default="random",
        help="speed: random-init GPT-2 + reward model, or the sentiment SFT policy + its RM",
    )
    p.add_argument(
        "--ours-generation-threads",
        type=int,
        default=1,
        help="speed and learn: torch threads of our trainers' decoding (0 = --threads)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="completions per step")
    p.add_argument("--response-length", type=int, default=32)
    p.add_argument("--learn-steps", type=int, default=30)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-early", type=int, default=0, help="learn: also evaluate steps 1..N")
    p.add_argument(
        "--ours-set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="learn: PPOConfig fields changed for our trainers (a variant; name it with --tag)",
    )
    p.add_argument(
        "--critic-scaled",
        action="store_true",
        help="learn: ours-ppo-critic starts from TRL 1.12's critic (the RM scaled by 1/reward_std)",
    )
    p.add_argument("--tag", default="", help="learn: variant name, results key <trainer>[tag]")
    p.add_argument("--eval-prompts", type=int, default=256)
    p.add_argument("--learn-lr", type=float, default=3e-4)
    p.add_argument("--kl-coef", type=float, default=0.05)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", type=Path, default=ROOT / "results" / "lm_vs_trl")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "lm_vs_trl_reward_kl.png")
    p.add_argument(
        "--frontier-plot", type=Path, default=None, help="learn: gold vs KL with seed bands"
    )
    p.add_argument(
        "--frontier-trainers", nargs="+", default=None, help="results keys to draw there"
    )
    p.add_argument("--report", action="store_true", help="only print tables / plot from results")
    p.add_argument("--resume", action="store_true", help="learn: keep finished runs, do the rest")
    p.add_argument("--reeval", action="store_true", help="learn: re-evaluate the kept runs")
    args = p.parse_args()
    for name in ("repeats", "steps", "threads", "batch_size", "learn_steps", "eval_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.ours_generation_threads < 0:
        p.error(
            f"--ours-generation-threads must be >= 0 (0 = --threads), "
            f"got {args.ours_generation_threads}"
        )
    if args.batch_size % 4:
        p.error(f"--batch-size must be a multiple of 4 (groups of 4), got {args.batch_size}")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs").mkdir(exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}

    def save() -> None:
        atomic_write_json(path, results)

    if not args.report:
        machine = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "threads": args.threads,
            "command": " ".join(["python", *sys.argv]),
        }
        if "command" in results.get("machine", {}):  # written by an older version: one part
            results["machine"] = {"learn": results["machine"]}
        for part in ("speed", "learn"):
            if args.part in (part, "all"):
                results.setdefault("machine", {})[part] = machine
        if args.part in ("speed", "all"):
            results["speed_runs"] = {}
            speed_part(args, results, save)
        if args.part in ("learn", "all"):
            if not args.resume:
                results["learn"] = {}
            learn_part(args, results, save)
        save()
    print(write_report(results, args.plot))
    if args.frontier_plot and results.get("learn"):
        from lm_bench_report import frontier_plot

        frontier_plot(results["learn"], args.frontier_plot, args.frontier_trainers)
        print(f"frontier plot: {args.frontier_plot}")


if __name__ == "__main__":
    main()
