"""PPOTrainer: token-level PPO (value head) and REINFORCE / RLOO / GRPO for causal LMs.

One step reads as the algorithm::

    rollout = trainer.generate(prompts)          # sample, then log-probs, ref log-probs, values
    scores, _ = trainer.score(rollout)           # reward model / callables
    metrics = trainer.step(rollout, scores)      # KL-shaped rewards -> advantages -> epochs of PPO

``train()`` loops over that with a prompt list, a progress bar, logging and checkpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor
from tqdm.auto import tqdm

from ..core import AdaptiveKLController, FixedKLController, masked_mean
from ..hf.models import context_length
from ..hf.sampling import sample_tokens
from ..hf.tokens import decode_rows, encode_prompts, left_pad, truncate_at_stop
from . import advantages as adv_lib
from .config import PPOConfig
from .models import build_policy
from .rewards import CombinedReward, RewardSpec
from .rollout import Rollout, evaluate_rollout
from .step import run_step
from .tracking import MetricsWriter, TrainerCallback, as_callback, tracker_names
from .value_head import PolicyWithValueHead


@dataclass
class TrainerState:
    step: int = 0  # completed optimisation steps
    data_epoch: int = 0  # passes over the prompt list in train()
    data_pos: int = 0  # next prompt of the current pass (global index)


class PPOTrainer:
    """Trains a causal LM against a reward with PPO or a critic-free estimator.

    Args:
        config: the hyperparameters.
        model: an ``AutoModelForCausalLM`` (optionally already a peft model) or a
            :class:`PolicyWithValueHead`.
        tokenizer: its tokenizer; a pad token distinct from EOS is added if missing
            (the embeddings grow by one row).
        reward: a callable ``(prompts, completions) -> list[float]``, a
            :class:`RewardModel`, or a list of them / ``(weight, fn)`` pairs. Needed
            by :meth:`train` and :meth:`score`, not by :meth:`step` given scores.
        ref_model: frozen reference; default a frozen copy of the policy (or,
            with LoRA, the policy with its adapters disabled).
        critic_model: separate value backbone (e.g. a copy of the reward model).
        prompts: training prompts for :meth:`train`.
        accelerator: an ``Accelerator``; by default one is built from the config.
        callbacks: :class:`TrainerCallback` objects or ``fn(step, metrics)`` hooks.
    """

    def __init__(
        self,
        config: PPOConfig,
        model,
        tokenizer,
        *,
        reward: RewardSpec | None = None,
        ref_model=None,
        critic_model=None,
        prompts: Sequence[str] | None = None,
        accelerator: Accelerator | None = None,
        callbacks: Sequence[TrainerCallback | Callable] = (),
    ) -> None:
        self.config = cfg = config
        trackers = tracker_names(cfg.log_with)
        self.accelerator = accelerator or Accelerator(
            cpu=cfg.cpu,
            mixed_precision="bf16" if cfg.bf16 else "no",
            log_with=trackers or None,
            project_dir=cfg.output_dir or None,
        )
        # the same seed on every rank while building (new embedding rows, heads), so the
        # reference copies match the policy that DDP broadcasts from rank 0
        set_seed(cfg.seed)
        self.tokenizer = tokenizer
        self.reward = CombinedReward(reward) if reward is not None else None
        self.prompts = list(prompts) if prompts is not None else None
        reward_models = self.reward.models() if self.reward else []
        policy, self.ref_model = build_policy(
            cfg,
            model,
            tokenizer,
            ref_model=ref_model,
            critic_model=critic_model,
            reward_models=reward_models,
        )
        self.stop_ids = cfg.stop_token_ids or [tokenizer.eos_token_id]
        self.max_prompt_length = self._prompt_limit(policy)

        params = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=cfg.learning_rate, eps=cfg.adam_eps, weight_decay=cfg.weight_decay
        )
        total = cfg.max_steps
        decay = cfg.lr_schedule == "linear"
        # not passed to accelerate.prepare, which would step it once per process
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: max(0.0, 1.0 - s / total) if decay else 1.0
        )
        self.model, self.optimizer = self.accelerator.prepare(policy, optimizer)
        device = self.accelerator.device
        if self.ref_model is not None:
            self.ref_model.to(device)
        for rm in self.reward.models() if self.reward else []:
            rm.to(device)
        if cfg.kl_controller == "adaptive":
            self.kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
        else:
            self.kl_ctl = FixedKLController(cfg.kl_coef)
        self.state = TrainerState()
        set_seed(cfg.seed + self.accelerator.process_index)  # distinct samples per rank
        self.sample_generator = torch.Generator().manual_seed(
            cfg.seed + self.accelerator.process_index
        )
        self.perm_generator = torch.Generator().manual_seed(cfg.seed)  # same on every rank
        self.callbacks = [as_callback(c) for c in callbacks]
        self.writer = MetricsWriter(self.accelerator, cfg.output_dir)
        if trackers:
            self.accelerator.init_trackers(
                "rlhf_pg_lm", config={k: str(v) for k, v in cfg.to_dict().items()}
            )

    # ------------------------------------------------------------------ setup

    def _prompt_limit(self, policy: PolicyWithValueHead) -> int:
        cfg = self.config
        ctx = context_length(policy.pretrained_model)
        limit = cfg.max_prompt_length or (ctx - cfg.max_new_tokens if ctx else 10**9)
        if limit < 1 or (ctx and limit + cfg.max_new_tokens > ctx):
            raise ValueError(
                f"max_prompt_length={cfg.max_prompt_length} plus max_new_tokens="
                f"{cfg.max_new_tokens} exceeds the model's context window of {ctx} tokens"
            )
        return limit

    @property
    def unwrapped_model(self) -> PolicyWithValueHead:
        return self.accelerator.unwrap_model(self.model)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    # ------------------------------------------------------------------ rollout
    @torch.no_grad()
    def generate(self, prompts: Sequence[str]) -> Rollout:
        """Sample ``samples_per_prompt`` completions per prompt and evaluate them."""
        cfg = self.config
        ids = encode_prompts(
            self.tokenizer,
            prompts,
            max_length=self.max_prompt_length,
            truncation=cfg.prompt_truncation,
        )
        k = cfg.samples_per_prompt
        ids = [s for s in ids for _ in range(k)]
        query_ids, query_mask = left_pad(ids, self.tokenizer.pad_token_id)
        query_ids, query_mask = query_ids.to(self.device), query_mask.to(self.device)
        start = time.perf_counter()
        # eval mode: dropout is off anyway, but gradient checkpointing would disable the KV cache
        self.unwrapped_model.eval()
        with self.accelerator.autocast():
            raw = sample_tokens(
                self.unwrapped_model.pretrained_model,
                query_ids,
                query_mask,
                generator=self.sample_generator,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                top_k=cfg.top_k,
                top_p=cfg.top_p,
                stop_ids=self.stop_ids,
                pad_id=self.tokenizer.pad_token_id,
            )
        seconds = time.perf_counter() - start
        response_ids, response_mask, has_stop = truncate_at_stop(
            raw, self.stop_ids, self.tokenizer.pad_token_id
        )
        rollout = self.rollout_from_tokens(
            query_ids,
            query_mask,
            response_ids,
            response_mask,
            prompts=[p for p in prompts for _ in range(k)],
            group_size=k,
        )
        rollout.has_stop = has_stop
        rollout.generate_seconds = seconds
        return rollout

    @torch.no_grad()
    def complete(
        self,
        prompts: Sequence[str],
        *,
        greedy: bool = False,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Completions only, for evaluation (no log-probs; one sample per prompt).

        ``greedy`` takes the most likely token at every step; otherwise sampling
        uses ``temperature`` (default: the training temperature).
        """
        cfg = self.config
        ids = encode_prompts(
            self.tokenizer,
            prompts,
            max_length=self.max_prompt_length,
            truncation=cfg.prompt_truncation,
        )
        query_ids, query_mask = left_pad(ids, self.tokenizer.pad_token_id)
        self.unwrapped_model.eval()
        with self.accelerator.autocast():
            raw = sample_tokens(
                self.unwrapped_model.pretrained_model,
                query_ids.to(self.device),
                query_mask.to(self.device),
                generator=self.sample_generator,
                max_new_tokens=max_new_tokens or cfg.max_new_tokens,
                temperature=0.0
                if greedy
                else (cfg.temperature if temperature is None else temperature),
                top_k=cfg.top_k,
                top_p=cfg.top_p,
                stop_ids=self.stop_ids,
                pad_id=self.tokenizer.pad_token_id,
            )
        response_ids, response_mask, _ = truncate_at_stop(
            raw, self.stop_ids, self.tokenizer.pad_token_id
        )
        return decode_rows(self.tokenizer, response_ids, response_mask)

    @torch.no_grad()
    def rollout_from_tokens(
        self,
        query_ids: Tensor,
        query_mask: Tensor,
        response_ids: Tensor,
        response_mask: Tensor,
        *,
        prompts: list[str] | None = None,
        group_size: int = 1,
    ) -> Rollout:
        """Build and evaluate a rollout from given tokens (left-padded prompts,
        right-padded responses): policy and reference log-probs, values, entropy."""
        dev = self.device
        query_ids, query_mask = query_ids.to(dev), query_mask.to(dev).bool()
        response_ids, response_mask = response_ids.to(dev), response_mask.to(dev).bool()
        texts = decode_rows(self.tokenizer, response_ids, response_mask)
        if prompts is None:
            prompts = decode_rows(self.tokenizer, query_ids, query_mask)
        last = adv_lib.last_valid_index(response_mask)
        rows = torch.arange(len(last), device=dev)
        stops = torch.as_tensor(self.stop_ids, device=dev)
        has_stop = torch.isin(response_ids[rows, last], stops)
        rollout = Rollout(
            query_ids,
            query_mask,
            response_ids,
            response_mask,
            list(prompts),
            texts,
            has_stop,
            group_size=group_size,
        )
        self._evaluate(rollout)
        return rollout

    def _evaluate(self, rollout: Rollout) -> None:
        start = time.perf_counter()
        with self.accelerator.autocast():
            evaluate_rollout(
                self.unwrapped_model.eval(),
                self.ref_model,
                rollout,
                temperature=self.config.temperature,
                with_values=self.config.uses_critic,
            )
        rollout.forward_seconds = time.perf_counter() - start

    def score(self, rollout: Rollout) -> tuple[Tensor, dict[str, Tensor]]:
        """Scores (B,) of the rollout's completions from the configured reward(s)."""
        if self.reward is None:
            raise ValueError(
                "no reward was given to PPOTrainer; pass reward=... or step(rollout, scores)"
            )
        start = time.perf_counter()
        scores, parts = self.reward(rollout, self.tokenizer)
        rollout.reward_seconds = time.perf_counter() - start
        return scores, parts

    # ------------------------------------------------------------------ update
    def step(
        self,
        rollout: Rollout,
        scores: Sequence[float] | Tensor | None = None,
        *,
        extra_metrics: dict[str, float] | None = None,
    ) -> dict:
        """One optimisation step on a rollout: advantages, then epochs x minibatches.

        ``scores`` are this process's sequence scores (one per row); None calls
        :meth:`score`. ``extra_metrics`` (already global) are logged with the step's.
        Returns the metrics (averaged over all processes).
        """
        return run_step(self, rollout, scores, extra_metrics or {})

    @property
    def kl_coef(self) -> float:
        return float(self.kl_ctl.value)

    def global_mean(self, x: Tensor, mask: Tensor | None = None) -> float:
        x = x.float().to(self.device)
        mask = None if mask is None else mask.to(self.device)
        return float(masked_mean(x, mask, distributed=True))

    # ------------------------------------------------------------------ loop
    def _next_prompts(self) -> list[str]:
        """This process's share of the next global batch of prompts (reshuffled each pass)."""
        cfg, acc, st = self.config, self.accelerator, self.state
        n_global = cfg.batch_size * acc.num_processes
        batch: list[str] = []
        while len(batch) < n_global:
            order = torch.randperm(
                len(self.prompts), generator=torch.Generator().manual_seed(cfg.seed + st.data_epoch)
            )
            take = order[st.data_pos : st.data_pos + n_global - len(batch)].tolist()
            batch += [self.prompts[i] for i in take]
            st.data_pos += len(take)
            if st.data_pos >= len(self.prompts):
                st.data_epoch, st.data_pos = st.data_epoch + 1, 0
        rank = acc.process_index
        return batch[rank * cfg.batch_size : (rank + 1) * cfg.batch_size]

    def train(self, num_steps: int | None = None) -> list[dict]:
        """Run until ``config.max_steps`` steps are done (or ``num_steps`` more)."""
        cfg = self.config
        if not self.prompts:
            raise ValueError("train() needs prompts: PPOTrainer(..., prompts=[...])")
        if self.reward is None:
            raise ValueError("train() needs a reward: PPOTrainer(..., reward=fn or RewardModel)")
        # every prompt checked before the first step, so a bad one cannot fail mid-run
        encode_prompts(
            self.tokenizer,
            self.prompts,
            max_length=self.max_prompt_length,
            truncation=cfg.prompt_truncation,
        )
        end = cfg.max_steps if num_steps is None else self.state.step + num_steps
        history = []
        bar = tqdm(
            total=end,
            initial=self.state.step,
            desc="ppo",
            disable=not (cfg.progress_bar and self.accelerator.is_local_main_process),
        )
        while self.state.step < end:
            rollout = self.generate(self._next_prompts())
            scores, parts = self.score(rollout)
            extra = {f"reward/{name}": self.global_mean(part) for name, part in parts.items()}
            for cb in self.callbacks:
                for name, value in (cb.on_rollout(self, rollout) or {}).items():
                    extra[name] = self.global_mean(torch.tensor(float(value)))
            metrics = self.step(rollout, scores, extra_metrics=extra)
            history.append(metrics)
            bar.update(1)
            bar.set_postfix(score=f"{metrics['score/mean']:.3f}", kl=f"{metrics['kl/seq']:.2f}")
            if cfg.output_dir and cfg.save_every and self.state.step % cfg.save_every == 0:
                self.save_checkpoint(f"{cfg.output_dir}/checkpoint-{self.state.step:06d}")
        bar.close()
        just_saved = cfg.save_every and self.state.step % cfg.save_every == 0
        if cfg.output_dir and not just_saved:
            self.save_checkpoint(f"{cfg.output_dir}/checkpoint-{self.state.step:06d}")
        for cb in self.callbacks:
            cb.on_train_end(self)
        return history

    def add_callback(self, callback: TrainerCallback | Callable) -> None:
        """Register a :class:`TrainerCallback` or a ``fn(step, metrics)`` metrics hook."""
        self.callbacks.append(as_callback(callback))

    def log(self, metrics: dict[str, float]) -> None:
        self.writer.write(self.state.step, metrics)
        for cb in self.callbacks:
            cb.on_step_end(self, metrics)

    def end_training(self) -> None:
        """Close trackers and the process group (call once at the end of a script)."""
        self.accelerator.end_training()

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, path: str) -> None:
        """Policy (full model or adapters), value head and tokenizer, on the main process."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.unwrapped_model.save_pretrained(path, tokenizer=self.tokenizer)
        self.accelerator.wait_for_everyone()

    def save_checkpoint(self, path: str) -> None:
        """Everything needed for an identical continuation, written atomically."""
        from .checkpoint import save_checkpoint

        save_checkpoint(self, path)

    def load_checkpoint(self, path: str) -> None:
        from .checkpoint import load_checkpoint

        load_checkpoint(self, path)
