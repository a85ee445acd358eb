"""PPOTrainer: token-level PPO (value head) and REINFORCE / RLOO / GRPO for causal LMs.

One step reads as the algorithm::

    rollout = trainer.generate(prompts)          # sample, then log-probs, ref log-probs, values
    scores, _ = trainer.score(rollout)           # reward model / callables
    metrics = trainer.step(rollout, scores)      # KL-shaped rewards -> advantages -> epochs of PPO

``train()`` loops over that with the prompt list, a progress bar, logging and checkpoints.
The formulas live in ``rlhf_pg.core``; the pure pieces of a step in ``advantages``,
``objective`` and ``update``; this class owns every piece of state (models, optimizer,
KL controller, schedule, RNGs, counters) and is the only place that changes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor
from tqdm.auto import tqdm

from ..core import AdaptiveKLController, FixedKLController
from ..hf.hub import write_model_card
from ..hf.models import context_length
from ..hf.sampling import sample_tokens, sample_with_logprobs, torch_threads
from ..hf.tokens import decode_rows, encode_prompts, left_pad, truncate_at_stop
from ..utils.run_folder import check_process_group
from .advantages import compute_advantages, last_valid_index, update_batch
from .checkpoint import load_checkpoint, save_checkpoint
from .config import PPOConfig
from .engines import (
    build_accelerator,
    check_engine,
    configure_engine,
    engine_of,
    full_weights,
    prepare_reference,
)
from .metrics import global_mean, global_nanmean, rollout_metrics, timing_metrics, update_metrics
from .models import build_policy
from .prompts import PromptRows, TrainerState, as_prompt_rows, next_prompts, prompt_limit
from .rewards import CombinedReward, RewardSpec, validate_scores
from .rollout import Rollout, check_rollout, evaluate_rollout
from .tracking import MetricsWriter, TrainerCallback, as_callback, tracker_names
from .update import optimizer_and_schedule, ppo_update
from .value_head import PolicyWithValueHead

__all__ = ["PPOTrainer", "TrainerState"]


class PPOTrainer:
    """Trains a causal LM against a reward with PPO or a critic-free estimator.

    Args:
        config: the hyperparameters.
        model: an ``AutoModelForCausalLM`` (optionally already a peft model) or a
            :class:`PolicyWithValueHead`.
        tokenizer: its tokenizer; a pad token distinct from EOS is added if missing
            (the embeddings grow by one row).
        reward: a callable ``(prompts, completions, **kwargs) -> list[float | None]``
            (kwargs: the prompt rows' other columns and ``completion_ids``, as its signature
            asks; see :mod:`rlhf_pg.lm.rewards`), a :class:`~rlhf_pg.hf.RewardModel`, or a
            list of them / ``(weight, fn)`` pairs. Needed by :meth:`train` and
            :meth:`score`, not by :meth:`step` given scores.
        ref_model: frozen reference; default a frozen copy of the policy (or,
            with LoRA, the policy with its adapters disabled).
        critic_model: separate value backbone (e.g. a copy of the reward model).
        prompts: training prompts for :meth:`train`: a list of strings, or a prompt
            dataset (a ``datasets.Dataset`` or a list of row dicts) whose ``prompt`` column
            holds strings or conversations (:mod:`rlhf_pg.lm.prompts`); checked here,
            before any model work.
        accelerator: an ``Accelerator``; by default one is built from the config.
        callbacks: :class:`TrainerCallback` objects or ``fn(step, metrics)`` hooks.
        peft_config: a ``peft.LoraConfig`` to train adapters with (instead of the config's
            flat ``lora_*`` fields). A model that already is a peft model (an SFT adapter)
            keeps training its adapter; a frozen copy of it is the reference.
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
        prompts: Sequence[str] | PromptRows | Sequence[dict] | None = None,
        accelerator: Accelerator | None = None,
        callbacks: Sequence[TrainerCallback | Callable] = (),
        peft_config=None,
    ) -> None:
        self.config = cfg = config
        trackers = tracker_names(cfg.report_to)
        if accelerator is None:  # DeepSpeed / FSDP2 when the launcher asks (engines.py)
            accelerator = build_accelerator(
                cpu=cfg.use_cpu,
                mixed_precision="bf16" if cfg.bf16 else "no",
                log_with=trackers or None,
                project_dir=cfg.output_dir or None,
            )
        else:
            check_engine(accelerator)
        self.accelerator = accelerator
        check_process_group(
            self.accelerator.num_processes, cpu_flag="--use_cpu true (use_cpu=True)"
        )
        # the same seed on every rank while building (new embedding rows, heads), so the
        # reference copies match the policy that DDP broadcasts from rank 0
        set_seed(cfg.seed)
        self.tokenizer = tokenizer
        self.reward = CombinedReward(reward) if reward is not None else None
        self.prompts = as_prompt_rows(prompts, tokenizer) if prompts is not None else None
        if self.reward is not None and self.prompts is not None:
            self.reward.check_arguments(list(self.prompts.columns))
        self.writer = MetricsWriter(self.accelerator, cfg)  # claims output_dir before any work
        reward_models = self.reward.models() if self.reward else []
        policy, self.ref_model = build_policy(
            cfg, model, tokenizer, ref_model=ref_model, critic_model=critic_model,
            reward_models=reward_models, lora_config=peft_config,
        )  # fmt: skip
        self.stop_ids = cfg.stop_token_ids or [tokenizer.eos_token_id]
        self.max_prompt_length = prompt_limit(context_length(policy.pretrained_model), cfg)
        optimizer, self.scheduler = optimizer_and_schedule(policy, cfg)
        rows = cfg.batch_size * cfg.samples_per_prompt
        configure_engine(
            self.accelerator,
            micro_batch_size=rows // (cfg.num_minibatches * cfg.gradient_accumulation_steps),
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            max_grad_norm=cfg.max_grad_norm,
        )
        self.model, self.optimizer = self.accelerator.prepare(policy, optimizer)
        if self.ref_model is not None:  # sharded like the policy under ZeRO-3 / FSDP2
            self.ref_model = prepare_reference(self.accelerator, self.ref_model)
        for frozen in reward_models:  # replicated on every process
            frozen.to(self.device)
        self.kl_controller = (
            AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
            if cfg.kl_controller == "adaptive"
            else FixedKLController(cfg.kl_coef)
        )
        # what a rollout's evaluation can leave out (see _evaluate)
        self.logprobs_from_sampling = sampling_logprobs_are_exact(cfg, policy)
        self.uses_reference = cfg.kl_coef > 0 or cfg.kl_controller == "adaptive"
        self.state = TrainerState()
        rank = self.accelerator.process_index
        set_seed(cfg.seed + rank)
        # per rank, on the model's device so sampling needs no host copy per token
        self.sample_generator = torch.Generator(device=self.device).manual_seed(cfg.seed + rank)
        self.perm_generator = torch.Generator().manual_seed(cfg.seed)  # same on every rank
        self.callbacks = [as_callback(c) for c in callbacks]
        if trackers:
            self.accelerator.init_trackers(
                "rlhf_pg_lm", config={k: str(v) for k, v in cfg.to_dict().items()}
            )

    @property
    def unwrapped_model(self) -> PolicyWithValueHead:
        return self.accelerator.unwrap_model(self.model)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def engine(self) -> str | None:
        """The sharded engine (``deepspeed``, ``fsdp``) or None (one process or DDP)."""
        return engine_of(self.accelerator)

    @property
    def kl_coef(self) -> float:
        """The current KL coefficient (beta) of the KL controller."""
        return float(self.kl_controller.kl_coef)

    def global_mean(self, x: Tensor, mask: Tensor | None = None) -> float:
        return global_mean(self.accelerator, x, mask)

    # ------------------------------------------------------------------ rollout
    def _encode(self, prompts: PromptRows) -> tuple[Tensor, Tensor]:
        ids = encode_prompts(
            self.tokenizer,
            prompts.texts,
            max_length=self.max_prompt_length,
            truncation=self.config.prompt_truncation,
            add_special_tokens=prompts.add_special_tokens,
        )
        query_ids, query_mask = left_pad(ids, self.tokenizer.pad_token_id)
        return query_ids.to(self.device), query_mask.to(self.device)

    def _sample(
        self, query_ids: Tensor, query_mask: Tensor, *, keep_logprobs: bool = False, **settings
    ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor] | None]:
        """Responses (ids, mask, has_stop) of the policy, from the trainer's own generator,
        and with ``keep_logprobs`` the sampling pass's (log-probs, entropy) of the response
        positions (else None)."""
        cfg = self.config
        settings = {
            "max_new_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature,
            **settings,
        }
        common = {
            "stop_ids": self.stop_ids,
            "pad_id": self.tokenizer.pad_token_id,
            "generator": self.sample_generator,
        }
        # eval mode: dropout is off anyway, but gradient checkpointing would disable the KV cache
        self.unwrapped_model.eval()
        model = self.unwrapped_model.pretrained_model
        # sharded engines: full weights for the whole decode (every process calls this)
        with (
            full_weights(self.accelerator, self.model),
            self.accelerator.autocast(),
            torch_threads(cfg.generation_threads),
        ):
            if keep_logprobs:
                raw, logprobs, entropies = sample_with_logprobs(
                    model, query_ids, query_mask, **common, **settings
                )
            else:
                raw = sample_tokens(model, query_ids, query_mask, **common, **settings)
        ids, mask, has_stop = truncate_at_stop(raw, self.stop_ids, self.tokenizer.pad_token_id)
        width = ids.shape[1]
        sampled = (logprobs[:, :width], entropies[:, :width]) if keep_logprobs else None
        return ids, mask, has_stop, sampled

    @torch.no_grad()
    def generate(self, prompts: Sequence[str] | PromptRows) -> Rollout:
        """Sample ``samples_per_prompt`` completions per prompt and evaluate them.
        ``prompts``: strings, conversations, or rows of a prompt dataset."""
        k = self.config.samples_per_prompt
        rows = as_prompt_rows(prompts, self.tokenizer).repeat(k)
        query_ids, query_mask = self._encode(rows)
        texts = rows.texts
        if self.config.prompt_truncation == "left":  # rewards see the prompt the policy saw
            cut = query_mask.sum(dim=1) >= self.max_prompt_length
            seen = decode_rows(self.tokenizer, query_ids, query_mask)
            texts = [s if c else p for p, s, c in zip(texts, seen, cut.tolist())]
        start = time.perf_counter()
        response_ids, response_mask, has_stop, sampled = self._sample(
            query_ids, query_mask, keep_logprobs=self.logprobs_from_sampling
        )
        seconds = time.perf_counter() - start
        rollout = self._new_rollout(
            query_ids, query_mask, response_ids, response_mask, prompts=texts, group_size=k,
            conversations=rows.conversations, columns=rows.columns,
        )  # fmt: skip
        rollout.has_stop = has_stop
        rollout.generate_seconds = seconds
        if sampled is not None:
            rollout.logprobs, rollout.entropy = sampled
        self._evaluate(rollout)
        return rollout

    @torch.no_grad()
    def complete(
        self,
        prompts: Sequence[str] | PromptRows,
        *,
        greedy: bool = False,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
        top_k: int = 0,
        top_p: float = 1.0,
    ) -> list[str]:
        """Completions only, for evaluation (no log-probs; one sample per prompt).

        Under a sharded engine (ZeRO-3, FSDP2) every process must call it (the weights are
        gathered). ``greedy`` (or ``temperature=0``) takes the most likely token at every step;
        otherwise sampling uses ``temperature`` (default: the training temperature),
        optionally truncated to the ``top_k`` tokens / the ``top_p`` nucleus.
        """
        settings: dict = {"top_k": top_k, "top_p": top_p}
        if greedy or temperature is not None:
            settings["temperature"] = 0.0 if greedy else temperature
        if max_new_tokens is not None:
            settings["max_new_tokens"] = max_new_tokens
        rows = as_prompt_rows(prompts, self.tokenizer)
        ids, mask, _, _ = self._sample(*self._encode(rows), **settings)
        return decode_rows(self.tokenizer, ids, mask)

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
        conversations: list[list[dict[str, str]]] | None = None,
        columns: dict[str, list] | None = None,
    ) -> Rollout:
        """Build and evaluate a rollout from given tokens (left-padded prompts,
        right-padded responses): policy and reference log-probs (none at a fixed kl_coef of
        0), values, entropy. ``conversations`` and ``columns`` (one entry per row) go to the reward functions."""
        rollout = self._new_rollout(
            query_ids, query_mask, response_ids, response_mask, prompts=prompts,
            group_size=group_size, conversations=conversations, columns=columns,
        )  # fmt: skip
        self._evaluate(rollout)
        return rollout

    def _new_rollout(
        self,
        query_ids: Tensor,
        query_mask: Tensor,
        response_ids: Tensor,
        response_mask: Tensor,
        *,
        prompts: list[str] | None,
        group_size: int,
        conversations: list[list[dict[str, str]]] | None = None,
        columns: dict[str, list] | None = None,
    ) -> Rollout:
        """A rollout of the given tokens, texts decoded, nothing evaluated yet."""
        dev = self.device
        query_ids, query_mask = query_ids.to(dev), query_mask.to(dev).bool()
        response_ids, response_mask = response_ids.to(dev), response_mask.to(dev).bool()
        texts = decode_rows(self.tokenizer, response_ids, response_mask)
        if prompts is None:
            prompts = decode_rows(self.tokenizer, query_ids, query_mask)
        rows = torch.arange(len(response_ids), device=dev)
        last_tokens = response_ids[rows, last_valid_index(response_mask)]
        has_stop = torch.isin(last_tokens, torch.as_tensor(self.stop_ids, device=dev))
        return Rollout(
            query_ids, query_mask, response_ids, response_mask, list(prompts), texts, has_stop,
            group_size=group_size, conversations=conversations, columns=dict(columns or {}),
        )  # fmt: skip

    def _evaluate(self, rollout: Rollout) -> None:
        """The no-grad passes the step needs: the policy's (skipped when the sampling pass
        gave the log-probs and there is no critic) and the reference's (skipped when the
        KL coefficient is fixed at 0: the KL then weighs nothing and is not measured)."""
        start = time.perf_counter()
        with full_weights(self.accelerator, self.model), self.accelerator.autocast():
            evaluate_rollout(
                self.unwrapped_model.eval(),
                self.ref_model,
                rollout,
                temperature=self.config.temperature,
                with_values=self.config.uses_critic,
                with_reference=self.uses_reference,
            )
        rollout.forward_seconds += time.perf_counter() - start

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
    ) -> dict[str, float]:
        """One PPO step on a rollout; returns the metrics (averaged over all processes).

        ``scores`` are this process's sequence scores (one per row); None calls
        :meth:`score`. ``extra_metrics`` (already global) are logged with the step's.
        """
        cfg, acc = self.config, self.accelerator
        start = time.perf_counter()
        self.writer.start_run()  # a fresh run refuses a used output_dir before changing state
        # 1. the rollout: this process's rows with the sampling policy's log-probs (and values)
        check_rollout(rollout, cfg)
        rollout = rollout.to(self.device)
        lacks_values = cfg.uses_critic and rollout.values is None
        lacks_reference = self.uses_reference and rollout.ref_logprobs is None
        if rollout.logprobs is None or lacks_values or lacks_reference:
            self._evaluate(rollout)  # computes only what is missing
        # 2. scores: one number per completion
        if scores is None:
            scores, _ = self.score(rollout)
        scores = validate_scores(scores, len(rollout), "scores passed to step()").to(self.device)
        # 3. KL shaping and 4. advantages, with this step's KL coefficient
        kl_coef = self.kl_coef
        adv = compute_advantages(rollout, scores, cfg, kl_coef, acc)
        # 5. update_epochs x num_minibatches optimizer steps
        lr = self.scheduler.get_last_lr()[0]
        batch = update_batch(rollout, adv)
        stats = ppo_update(
            self.model, self.optimizer, acc, batch, cfg, kl_coef, self.perm_generator
        )
        # 6. the KL controller sees the observed KL; the schedule and the counter advance
        metrics = rollout_metrics(acc, rollout, scores, adv, cfg)
        self.kl_controller.update(metrics["kl/seq"], len(rollout) * acc.num_processes)
        self.scheduler.step()
        self.state.step += 1
        # 7. log
        metrics.update({"kl/coef": kl_coef, "lr": lr, **update_metrics(acc, stats)})
        metrics.update(timing_metrics(acc, rollout, time.perf_counter() - start))
        metrics.update(extra_metrics or {})
        self.log(metrics)
        return metrics

    # ------------------------------------------------------------------ loop
    def train(self, num_steps: int | None = None) -> list[dict]:
        """Run until ``config.max_steps`` steps are done (or ``num_steps`` more)."""
        cfg, acc = self.config, self.accelerator
        if not self.prompts:
            raise ValueError(
                "train() needs prompts: PPOTrainer(..., prompts=[...] or a prompt dataset)"
            )
        if self.reward is None:
            raise ValueError("train() needs a reward: PPOTrainer(..., reward=fn or RewardModel)")
        self._encode(self.prompts)  # every prompt checked before the first step
        self.writer.start_run()
        end = cfg.max_steps if num_steps is None else self.state.step + num_steps
        history = []
        bar = tqdm(
            total=end,
            initial=self.state.step,
            desc=cfg.estimator,
            disable=not (cfg.progress_bar and acc.is_local_main_process),
        )
        while self.state.step < end:
            rollout = self.generate(self.next_prompts())
            scores, parts = self.score(rollout)
            metrics = self.step(rollout, scores, extra_metrics=self._rollout_extras(rollout, parts))
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

    def next_prompts(self) -> PromptRows:
        """This process's share of the next global batch of training prompt rows."""
        acc = self.accelerator
        rows = next_prompts(
            range(len(self.prompts)), self.state, batch_size=self.config.batch_size,
            rank=acc.process_index, num_processes=acc.num_processes, seed=self.config.seed,
        )  # fmt: skip
        return self.prompts.select(rows)

    def _rollout_extras(self, rollout: Rollout, parts: dict[str, Tensor]) -> dict[str, float]:
        """Each reward component's mean and the callbacks' rollout metrics, over processes."""
        # a component's mean over the rows it applies to (NaN marks "does not apply")
        extra = {f"reward/{name}": global_nanmean(self.accelerator, p) for name, p in parts.items()}
        for cb in self.callbacks:
            for name, value in (cb.on_rollout(self, rollout) or {}).items():
                extra[name] = self.global_mean(torch.tensor(float(value)))
        return extra

    def add_callback(self, callback: TrainerCallback | Callable) -> None:
        """Register a :class:`TrainerCallback` or a ``fn(step, metrics)`` metrics hook."""
        self.callbacks.append(as_callback(callback))

    def log(self, metrics: dict[str, float]) -> None:
        self.writer.write(self.state.step, metrics)
        for cb in self.callbacks:
            cb.on_step_end(self, metrics)

    def end_training(self) -> None:
        """Close trackers and the process group, free output_dir (call once at the end)."""
        self.accelerator.end_training()
        self.writer.close()

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, path: str) -> None:
        """Policy (full model or adapters), value head, tokenizer and a model card, on the
        main process (every process calls it: sharded engines gather the full weights first)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        state_dict = acc.get_state_dict(self.model) if self.engine else None
        if acc.is_main_process:
            self.unwrapped_model.save_pretrained(
                path, tokenizer=self.tokenizer, state_dict=state_dict
            )
            self._write_card(path)
        acc.wait_for_everyone()

    def _write_card(self, path: str) -> None:
        """A model card for the saved policy (the PPO stage replaces it with a fuller one)."""
        cfg, base = self.config, self.unwrapped_model.pretrained_model
        if self.unwrapped_model.is_peft:
            base = base.get_base_model()
        write_model_card(
            path,
            title=f"{cfg.estimator.upper()} policy",
            stage=cfg.estimator,
            base_model=getattr(base.config, "_name_or_path", "") or None,
            datasets=[],
            config=cfg.to_dict(),
            metrics={"steps": self.state.step},
            library_name="peft" if self.unwrapped_model.is_peft else "transformers",
        )

    def save_checkpoint(self, path: str) -> None:
        """Everything needed for an identical continuation, written atomically."""
        save_checkpoint(self, path)

    def load_checkpoint(self, path: str) -> None:
        load_checkpoint(self, path)


def sampling_logprobs_are_exact(config: PPOConfig, policy: PolicyWithValueHead) -> bool:
    """Whether a rollout keeps the sampling pass's log-probs instead of a second forward
    pass: asked for (``config.sampling_logprobs``), the tokens were drawn from the full ``softmax(logits / T)`` (training never
    truncates, see ``PPOConfig.top_k``), the pass is needed for nothing else (no critic),
    and everything runs in float32, where the two passes differ by rounding only (about
    5e-7, ``test_sampling_logprobs_equal_the_recomputation``); bf16 rounds far more."""
    float32 = all(p.dtype == torch.float32 for p in policy.pretrained_model.parameters())
    full_softmax = config.top_k == 0 and config.top_p == 1.0 and config.temperature > 0
    return (
        config.sampling_logprobs
        and full_softmax
        and float32
        and not config.bf16
        and not config.uses_critic
    )
