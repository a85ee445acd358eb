"""PPO-clip: GAE, epochs over shuffled minibatches, clipped policy and value losses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

from rlhf_pg.core import explained_variance, ppo_clip_loss, value_loss, whiten

from ..config import Config, check_positive
from ..rollout import Batch
from .base import Algorithm, check_minibatches, unchecked_core

_LOGGED = (
    "loss/policy",
    "loss/value",
    "loss/entropy",
    "policy/approx_kl",
    "policy/clipfrac",
    "grad_norm",
)


def flat_steps(b: Batch, adv: Tensor, ret: Tensor) -> dict[str, Tensor]:
    """Every stored step of the rollout as one row (dim 0) of each tensor."""
    obs, actions = b.flat()
    return {
        "obs": obs,
        "actions": actions,
        "old_logp": b.logprobs.reshape(-1),
        "old_v": b.values.reshape(-1),
        "adv": adv.reshape(-1),
        "ret": ret.reshape(-1),
    }


def shuffled_minibatches(
    d: dict[str, Tensor], perm: Tensor, mb_size: int
) -> Iterator[dict[str, Tensor]]:
    """The rows of ``d`` in the order ``perm``, in consecutive minibatches of ``mb_size``.

    One gather per tensor per epoch, then slices (views): the same rows as gathering
    ``perm[start : start + mb_size]`` for every minibatch, with fewer copies and calls.
    """
    shuffled = {k: v[perm] for k, v in d.items()}
    for start in range(0, len(perm), mb_size):
        yield {k: v[start : start + mb_size] for k, v in shuffled.items()}


class PPO(Algorithm):
    # at the default budget every seed did better with them on Pendulum-v1,
    # MountainCarContinuous-v0 and LunarLanderContinuous-v3, for PPO and PPO-KL (which
    # inherits them): docs/benchmarks.md, "PPO on continuous actions without a preset"
    continuous_defaults: ClassVar[dict[str, Any]] = {"norm_obs": True, "norm_reward": True}

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        check_positive("clip_eps", cfg.clip_eps)
        check_positive("update_epochs", cfg.update_epochs)
        check_positive("num_minibatches", cfg.num_minibatches)
        if cfg.clip_vloss:
            check_positive("clip_eps_value", cfg.clip_eps_value)
        if cfg.target_kl is not None:
            check_positive("target_kl", cfg.target_kl)
        check_minibatches(cfg)

    def update(self, b: Batch, progress_left: float) -> dict[str, float]:
        cfg = self.cfg
        adv, ret = self.advantages(b)
        flat = flat_steps(b, adv, ret)
        clip = max(cfg.clip_eps * (progress_left if cfg.anneal_clip else 1.0), 1e-8)
        with unchecked_core():
            logs, epochs = self._epochs(flat, clip)
        self.check_losses(logs)
        metrics = dict(zip(_LOGGED, logs.mean(0).tolist()))
        metrics["value/explained_variance"] = explained_variance(b.values, ret)
        metrics.update({"ppo/epochs": epochs, "ppo/clip_eps": clip})
        return metrics

    def _epochs(self, d: dict[str, Tensor], clip: float) -> tuple[Tensor, int]:
        cfg = self.cfg
        n = d["obs"].shape[0]
        mb_size = n // cfg.num_minibatches

        def clipped(logp: Tensor, old_logp: Tensor, adv: Tensor):
            return ppo_clip_loss(logp, old_logp, adv, clip_eps=clip)

        logs: list[Tensor] = []
        for epoch in range(cfg.update_epochs):
            epoch_kl = []
            for mb in shuffled_minibatches(d, torch.randperm(n), mb_size):
                pg, vl, ent_mean, grad_norm = self.minibatch_step(mb, clipped)
                logs.append(
                    torch.stack(
                        [pg.loss, vl, ent_mean, pg.approx_kl, pg.clip_fraction, grad_norm]
                    ).detach()
                )
                epoch_kl.append(pg.approx_kl)
            if cfg.target_kl is not None and float(torch.stack(epoch_kl).mean()) > cfg.target_kl:
                return torch.stack(logs), epoch + 1
        return torch.stack(logs), cfg.update_epochs

    def minibatch_step(
        self, mb: dict[str, Tensor], policy_loss: Callable
    ) -> tuple[Any, Tensor, Tensor, Tensor]:
        """One optimizer step on the minibatch ``mb`` (rows of :func:`flat_steps`):
        ``policy_loss(logp, old_logp, adv)`` (clipped surrogate, or the KL-penalty one)
        + value loss - entropy bonus."""
        cfg, agent = self.cfg, self.agent
        logp, ent, v = agent.evaluate(mb["obs"], mb["actions"], entropy_grad=cfg.entropy_coef != 0)

        def row(x: Tensor) -> Tensor:  # the core wants (batch, time): a minibatch is one row
            return x.view(1, -1)

        adv = row(mb["adv"])
        if cfg.norm_adv and adv.shape[1] > 1:
            adv = whiten(adv)
        pg = policy_loss(row(logp), row(mb["old_logp"]), adv)
        vf_clip = cfg.clip_eps_value if cfg.clip_vloss else None
        vl = value_loss(row(v), row(mb["ret"]), old_values=row(mb["old_v"]), clip_eps=vf_clip)
        ent_mean = ent.mean()
        grad_norm = self.step(pg.loss - cfg.entropy_coef * ent_mean + cfg.vf_coef * vl)
        return pg, vl, ent_mean, grad_norm
