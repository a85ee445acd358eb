"""An offline comparison of RLHF algorithms on the gold-scored sentiment task (issue 16).

Every algorithm starts from the same SFT policy and learns from the same learned reward
model (or from the very preference pairs that reward model was trained on), both from the
cache of ``rlhf-pg demo`` (bench/lm_bench_setup.py ``build_learning_artifacts``); the gold
scorer (VADER, rlhf_pg.tasks) is only used to evaluate:

  ppo          ours, value head on the policy trunk + GAE, 4 epochs, k1 KL in the reward
  ppo-critic   ours, the same with a separate critic initialised from the reward model
  reinforce    ours, REINFORCE with the batch-mean baseline, 16 prompts x 4 samples
  rloo         ours, RLOO (leave-one-out baseline), 16 prompts x 4 samples
  grpo         ours, GRPO (group mean / std), k3 KL as a loss term, token mean
  dr-grpo      ours, Dr. GRPO: GRPO without the std scaling, token sum / constant
  dpo          TRL DPOTrainer on the reward model's own training pairs (VADER-labelled)
  online-dpo   TRL OnlineDPOTrainer (trl.experimental): two samples per prompt, the learned
               reward model picks the preferred one (the signal the RL algorithms get)

Ours use bench/lm_bench_runners.py ``ours_config``: the settings matched to TRL's trainers.
Every step sees 64 completions (DPO: 32 pairs); every ``eval_every`` steps the policy is
evaluated on held-out prompts by rlhf_pg.stages.evaluate.evaluate_policy: proxy reward,
gold score and KL to the SFT reference. Training seconds exclude the evaluations.
A long run at a low KL coefficient (``--overopt-*``) shows reward over-optimisation.

    python bench/rlhf_algorithms.py --threads 1     # everything: ~46 min measured-and-extrapolated
                                                    # on the loaded 2-core machine (docs/benchmarks.md)
    python bench/rlhf_algorithms.py --quick         # tiny models and budget: a smoke run
    python bench/rlhf_algorithms.py --report        # table + plots from the saved runs

One JSON per (algorithm, seed) under ``<out>/runs/``, written atomically when the run ends;
a re-run skips finished ones. ``<out>/table.md`` and ``<out>/*.png`` are rewritten each time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rlhf_algorithms_report import LABELS as ALGORITHMS  # noqa: E402

OURS = ("ppo", "ppo-critic", "reinforce", "rloo", "grpo", "dr-grpo")


@dataclass(frozen=True)
class Budget:
    """Steps and sizes of one comparison; FULL fits the hour, QUICK is a smoke run."""

    steps: int = 30
    eval_every: int = 5
    eval_prompts: int = 128
    completions: int = 64  # per step, every algorithm (DPO: completions // 2 pairs)
    response_length: int = 32
    learning_rate: float = 3e-4
    kl_coef: float = 0.05  # RL algorithms' KL coefficient
    dpo_beta: float = 0.1  # DPO / online DPO beta (TRL's default)
    overopt_algorithm: str = "rloo"
    overopt_steps: int = 120
    overopt_eval_every: int = 10
    overopt_kl_coef: float = 0.002


FULL = Budget()
QUICK = Budget(
    steps=2,
    eval_every=1,
    eval_prompts=8,
    completions=8,
    response_length=8,
    overopt_steps=3,
    overopt_eval_every=1,
)
# --quick without --sft-model: the demo's stages shrunk to CPU-seconds (the sizes of
# tests/pipeline_fixtures.py TINY_DEMO, where SFT samples carry sentiment words that VADER
# tells apart), cached under <out>/quick-cache
QUICK_DEMO = {
    "num_threads": 1,
    "sft": {"corpus_size": 3000, "vocab_size": 400, "n_layer": 2, "n_embd": 64, "max_steps": 300},
    "reward_model": {"n_prompts": 300, "num_train_epochs": 4.0, "learning_rate": 2e-3,
                     "max_new_tokens": 16},
}  # fmt: skip


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line naming the bad value, exit code 2 (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="rlhf_algorithms.py", description=__doc__.splitlines()[0])
    p.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), metavar="NAME",
                   help=f"any of {', '.join(ALGORITHMS)}")  # fmt: skip
    p.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (--quick: 0 1)"
    )
    p.add_argument("--quick", action="store_true", help="tiny models and budget (smoke run)")
    p.add_argument("--no-overopt", action="store_true", help="skip the over-optimisation runs")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0: OMP_NUM_THREADS "
                   "or the physical cores")  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default results/rlhf_algorithms[_quick])")  # fmt: skip
    p.add_argument("--report", action="store_true", help="only the table + plots from saved runs")
    p.add_argument(
        "--sft-model",
        type=Path,
        default=None,
        help="SFT policy folder (default: the demo's cache, trained if missing)",
    )
    p.add_argument("--reward-model", type=Path, default=None,
                   help="reward model folder of train_reward_model (with pairs_train.jsonl); "
                   "given together with --sft-model")  # fmt: skip
    for f in dataclasses.fields(Budget):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None,
                       help=f"default {f.default} (--quick: {getattr(QUICK, f.name)})")  # fmt: skip
    args = p.parse_args(argv)
    bad = [a for a in args.algorithms if a not in ALGORITHMS]
    if bad:
        p.error(f"--algorithms {bad[0]!r} is not one of {', '.join(ALGORITHMS)}")
    if args.threads < 0:
        p.error(f"--threads must be >= 0, got {args.threads}")
    if args.seeds is None:
        args.seeds = [0, 1] if args.quick else [0, 1, 2]
    if any(s < 0 for s in args.seeds):
        p.error(f"--seeds must be >= 0, got {args.seeds}")
    if (args.sft_model is None) != (args.reward_model is None):
        p.error("--sft-model and --reward-model go together (or neither: the demo's cache)")
    if args.reward_model is not None:
        for path in (args.sft_model / "config.json", args.reward_model / "pairs_train.jsonl"):
            if not path.is_file():
                p.error(f"{path} does not exist; --sft-model / --reward-model are folders "
                        "written by train_sft / train_reward_model")  # fmt: skip
    base = QUICK if args.quick else FULL
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Budget)}
    args.budget = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    check_budget(args.budget, p)
    if args.out is None:
        args.out = ROOT / "results" / ("rlhf_algorithms_quick" if args.quick else "rlhf_algorithms")
    return args


def check_budget(b: Budget, p: argparse.ArgumentParser) -> None:
    for name in ("steps", "eval_every", "eval_prompts", "response_length", "overopt_steps",
                 "overopt_eval_every"):  # fmt: skip
        if getattr(b, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(b, name)}")
    if b.completions < 4 or b.completions % 4:
        p.error(f"--completions must be a multiple of 4 (groups of 4), got {b.completions}")
    for name in ("learning_rate", "dpo_beta"):
        if not getattr(b, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(b, name)}")
    for name in ("kl_coef", "overopt_kl_coef"):
        if getattr(b, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(b, name)}")
    if b.overopt_algorithm not in OURS:
        p.error(f"--overopt-algorithm {b.overopt_algorithm!r} is not one of {', '.join(OURS)}")


# --- the shared starting point ------------------------------------------------------------


@dataclass
class Setup:
    """What every run starts from and is evaluated on."""

    policy: str  # the SFT model folder (also the KL reference)
    reward: str  # the learned reward model folder
    pairs: str  # the reward model's training pairs (prompt/chosen/rejected, VADER-labelled)
    train_prompts: list[str]
    eval_prompts: list[str]


def build_setup(args) -> Setup:
    from lm_bench_setup import build_learning_artifacts, learning_prompts

    from rlhf_pg.stages.evaluate import EvalArgs
    from rlhf_pg.tasks import sentiment_prompts

    if args.sft_model is not None:
        art = {"policy": str(args.sft_model), "reward": str(args.reward_model)}
    elif args.quick:
        art = build_learning_artifacts(
            cache_dir=str(args.out / "quick-cache"), overrides=QUICK_DEMO
        )
    else:
        art = build_learning_artifacts(progress=True)
    train, _ = learning_prompts()
    held = EvalArgs.__dataclass_fields__  # the evaluate recipe's held-out prompts (seed 123)
    eval_prompts = sentiment_prompts(
        args.budget.eval_prompts,
        seed=held["prompt_seed"].default,
        n_words=held["prompt_words"].default,
    )
    pairs = Path(art["reward"]) / "pairs_train.jsonl"
    return Setup(art["policy"], art["reward"], str(pairs), train, eval_prompts)


def load_tokenizer(setup: Setup):
    """A fresh copy per trainer (a trainer may change its tokenizer's settings)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(setup.policy, padding_side="left")


class Evaluator:
    """Held-out proxy reward, gold score and KL to the SFT reference of a policy: the
    project's one evaluation (rlhf_pg.stages.evaluate), with the same sampling seed for all."""

    def __init__(self, setup: Setup, budget: Budget) -> None:
        from transformers import AutoModelForCausalLM

        from rlhf_pg.hf.scoring import RewardModel

        self.tokenizer = load_tokenizer(setup)
        self.reference = AutoModelForCausalLM.from_pretrained(setup.policy).eval()
        self.reward = RewardModel.from_pretrained(setup.reward)
        self.prompts = setup.eval_prompts
        self.max_new_tokens = budget.response_length

    def __call__(self, policy, step: int, train_seconds: float) -> dict:
        from rlhf_pg.stages.evaluate import evaluate_policy

        ev = evaluate_policy(
            policy,
            self.tokenizer,
            self.prompts,
            task="sentiment",
            max_new_tokens=self.max_new_tokens,
            reward=self.reward,
            reference=self.reference,
            seed=0,
        )
        return {
            "step": step,
            "train_seconds": train_seconds,
            "proxy": ev["proxy"],
            "gold": ev["gold_mean"],
            "gold_positive": ev["gold_positive"],
            "kl": ev["kl_seq"],
            "response_length": ev["response_length"],
        }


class Clock:
    """Training seconds only: stopped around the evaluations."""

    def __init__(self) -> None:
        self.total, self._since = 0.0, None

    def start(self) -> None:
        self._since = time.perf_counter()

    def stop(self) -> float:
        if self._since is not None:
            self.total += time.perf_counter() - self._since
            self._since = None
        return self.total


@dataclass(frozen=True)
class Run:
    """One (algorithm, seed) run: its budget and the file its result goes to."""

    algorithm: str
    seed: int
    steps: int
    eval_every: int
    kl_coef: float
    kind: str  # "main" or "overopt"

    @property
    def name(self) -> str:
        prefix = "overopt-" if self.kind == "overopt" else ""
        return f"{prefix}{self.algorithm}-seed{self.seed}"


# --- one runner per family ----------------------------------------------------------------


def ours_trainer_config(run: Run, budget: Budget):
    """Ours: the TRL-matched settings of bench/lm_bench_runners.py, plus REINFORCE (RLOO's
    layout with the batch-mean baseline) and Dr. GRPO (GRPO without std scaling, token sum)."""
    from lm_bench_runners import ours_config

    base = {"reinforce": "ours-rloo", "dr-grpo": "ours-grpo"}.get(run.algorithm)
    knobs = argparse.Namespace(
        response_length=budget.response_length,
        temperature=1.0,
        lr=budget.learning_rate,
        kl_coef=run.kl_coef,
        minibatches=1,
        steps=run.steps,
        seed=run.seed,
        batch_size=budget.completions,
        ppo_epochs=4,
    )
    cfg = ours_config(base or f"ours-{run.algorithm}", knobs)
    if run.algorithm == "reinforce":
        cfg = dataclasses.replace(cfg, estimator="reinforce")
    if run.algorithm == "dr-grpo":
        cfg = dataclasses.replace(
            cfg, grpo_scale_by_std=False, loss_aggregation="seq-mean-token-sum"
        )
    return cfg


def run_ours(run: Run, setup: Setup, budget: Budget, evaluate: Evaluator) -> dict:
    """rlhf_pg.lm.PPOTrainer with the algorithm's estimator; numbered as one RLHF step."""
    from lm_bench_runners import learned_reward
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from rlhf_pg.lm import PPOTrainer

    cfg = ours_trainer_config(run, budget)
    policy = AutoModelForCausalLM.from_pretrained(setup.policy)
    critic = None
    if run.algorithm == "ppo-critic":  # TRL 1.12's layout: a critic initialised from the RM
        critic = AutoModelForSequenceClassification.from_pretrained(setup.reward)
    trainer = PPOTrainer(
        cfg,
        policy,
        load_tokenizer(setup),
        reward=learned_reward(setup.reward),
        prompts=setup.train_prompts,
        critic_model=critic,
    )
    lm = trainer.unwrapped_model.pretrained_model
    clock, evals, step_seconds, train_scores = Clock(), [evaluate(lm, 0, 0.0)], [], []
    for step in range(1, run.steps + 1):
        clock.start()
        rollout = trainer.generate(trainer.next_prompts())  # 1. sample completions
        scores, _ = trainer.score(rollout)  # 2. score them with the reward model
        trainer.step(rollout, scores)  # 3. advantages, KL, policy update
        before = clock.total
        step_seconds.append(clock.stop() - before)
        train_scores.append(float(scores.float().mean()))
        if step % run.eval_every == 0 or step == run.steps:
            evals.append(evaluate(lm, step, clock.total))
    return {"evals": evals, "step_seconds": step_seconds, "train_scores": train_scores}


def trl_callback(evaluate: Evaluator, run: Run, clock: Clock, evals: list, step_seconds: list):
    """A TrainerCallback: evaluates at step 0 and every ``eval_every`` steps, off the clock."""
    from transformers import TrainerCallback

    class EvalCallback(TrainerCallback):
        def on_train_begin(self, a, state, control, model=None, **kw):
            evals.append(evaluate(model, 0, 0.0))
            clock.start()

        def on_step_end(self, a, state, control, model=None, **kw):
            before = clock.total
            step_seconds.append(clock.stop() - before)
            step = state.global_step
            if step % run.eval_every == 0 or step == run.steps:
                evals.append(evaluate(model, step, clock.total))
            clock.start()

        def on_train_end(self, a, state, control, **kw):
            clock.stop()

    return EvalCallback()


def trl_common(run: Run, budget: Budget, output_dir: str) -> dict:
    """Trainer settings both TRL runners share: CPU, fp32, constant learning rate, no saving."""
    return dict(
        output_dir=output_dir,
        per_device_train_batch_size=budget.completions // 2,
        gradient_accumulation_steps=1,
        learning_rate=budget.learning_rate,
        lr_scheduler_type="constant",
        max_steps=run.steps,
        seed=run.seed,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        disable_dropout=True,
    )


def run_trl_dpo(run: Run, setup: Setup, budget: Budget, evaluate: Evaluator) -> dict:
    """TRL's DPOTrainer on the reward model's training pairs: the same VADER labels the
    reward model learned from, used directly (completions // 2 pairs per step)."""
    import datasets
    from transformers import AutoModelForCausalLM
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    pairs = datasets.Dataset.from_json(setup.pairs).select_columns(["prompt", "chosen", "rejected"])
    policy = AutoModelForCausalLM.from_pretrained(setup.policy)
    clock, evals, step_seconds = Clock(), [], []
    with tempfile.TemporaryDirectory() as tmp:
        config = DPOConfig(**trl_common(run, budget, tmp), beta=budget.dpo_beta, max_length=128)
        trainer = DPOTrainer(
            model=policy,
            args=config,
            train_dataset=pairs,
            processing_class=load_tokenizer(setup),
            callbacks=[trl_callback(evaluate, run, clock, evals, step_seconds)],
        )
        trainer.remove_callback(PrinterCallback)  # its per-step dicts would flood the output
        trainer.train()
    return {"evals": evals, "step_seconds": step_seconds, "pairs": len(pairs)}


def run_trl_online_dpo(run: Run, setup: Setup, budget: Budget, evaluate: Evaluator) -> dict:
    """TRL's OnlineDPOTrainer: two fresh samples per prompt, the learned reward model (the
    scorer the RL algorithms train against) picks the chosen one."""
    import datasets
    from lm_bench_runners import learned_reward
    from transformers import AutoModelForCausalLM
    from transformers.trainer_callback import PrinterCallback
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    policy = AutoModelForCausalLM.from_pretrained(setup.policy)
    prompts = datasets.Dataset.from_dict({"prompt": setup.train_prompts})
    clock, evals, step_seconds = Clock(), [], []
    with tempfile.TemporaryDirectory() as tmp:
        config = OnlineDPOConfig(
            **trl_common(run, budget, tmp),
            beta=[budget.dpo_beta],
            max_new_tokens=budget.response_length,
            temperature=1.0,
            top_p=1.0,
        )
        trainer = OnlineDPOTrainer(
            model=policy,
            reward_funcs=learned_reward(setup.reward),
            args=config,
            train_dataset=prompts,
            processing_class=load_tokenizer(setup),
            callbacks=[trl_callback(evaluate, run, clock, evals, step_seconds)],
        )
        trainer.remove_callback(PrinterCallback)  # its per-step dicts would flood the output
        trainer.train()
    return {"evals": evals, "step_seconds": step_seconds}


RUNNERS = {
    **{name: run_ours for name in OURS},
    "dpo": run_trl_dpo,
    "online-dpo": run_trl_online_dpo,
}


# --- the comparison -----------------------------------------------------------------------


def planned_runs(args) -> list[Run]:
    b = args.budget
    runs = [
        Run(name, seed, b.steps, b.eval_every, b.kl_coef, "main")
        for seed in args.seeds
        for name in args.algorithms
    ]
    if not args.no_overopt:
        runs += [
            Run(
                b.overopt_algorithm,
                seed,
                b.overopt_steps,
                b.overopt_eval_every,
                b.overopt_kl_coef,
                "overopt",
            )  # fmt: skip
            for seed in args.seeds
        ]
    return runs


def machine() -> dict:
    import torch

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0],
        "python": platform.python_version(),
    }


def versions() -> dict:
    import torch
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__}  # fmt: skip


def run_all(args) -> None:
    from tqdm.auto import tqdm

    from rlhf_pg.utils.io import atomic_write_json

    runs_dir = args.out / "runs"
    todo = [r for r in planned_runs(args) if not (runs_dir / f"{r.name}.json").exists()]
    skipped = len(planned_runs(args)) - len(todo)
    if skipped:
        print(f"{skipped} finished run(s) kept in {runs_dir}", file=sys.stderr)
    if not todo:
        return
    setup = build_setup(args)
    evaluate = Evaluator(setup, args.budget)
    bar = tqdm(todo, desc="runs", unit="run", file=sys.stderr)
    for run in bar:
        bar.set_postfix_str(run.name)
        start, start_machine = time.perf_counter(), machine()
        result = RUNNERS[run.algorithm](run, setup, args.budget, evaluate)
        result.update(
            algorithm=run.algorithm,
            seed=run.seed,
            kind=run.kind,
            steps=run.steps,
            kl_coef=run.kl_coef,
            train_seconds=sum(result["step_seconds"]),
            wall_seconds=time.perf_counter() - start,
            budget=dataclasses.asdict(args.budget),
            machine=start_machine,
            load_avg_1min_end=os.getloadavg()[0],
            versions=versions(),
            setup={"policy": setup.policy, "reward": setup.reward, "pairs": setup.pairs},
        )
        atomic_write_json(runs_dir / f"{run.name}.json", result)
        last = result["evals"][-1]
        bar.write(
            f"{run.name}: gold {last['gold']:+.3f} proxy {last['proxy']:+.3f} "
            f"KL {last['kl']:.2f} ({result['train_seconds']:.0f} s training, "
            f"{result['wall_seconds']:.0f} s with evaluations)",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from rlhf_pg.utils.run_folder import lock_run_folder

    args.out.mkdir(parents=True, exist_ok=True)
    lock = lock_run_folder(args.out, "results folder")  # one writer per results folder
    try:
        if not args.report:
            import transformers

            from rlhf_pg.utils.threads import set_torch_threads

            set_torch_threads(args.threads)
            transformers.utils.logging.set_verbosity_error()
            os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            run_all(args)
        from rlhf_algorithms_report import write_report

        print(write_report(args.out))
    finally:
        lock.release()


if __name__ == "__main__":
    main()
