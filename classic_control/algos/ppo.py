"""PPO-clip: GAE, epochs over shuffled minibatches, clipped policy and value losses."""

from __future__ import annotations

from collections.abc import Callable
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
        obs, actions = b.flat()
        n = obs.shape[0]
        flat = {
            "obs": obs,
            "actions": actions,
            # the core wants (batch, time): a flat minibatch is one row
            "old_logp": b.logprobs.reshape(1, n),
            "old_v": b.values.reshape(1, n),
            "adv": adv.reshape(1, n),
            "ret": ret.reshape(1, n),
        }
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
            perm = torch.randperm(n)
            epoch_kl = []
            for start in range(0, n, mb_size):
                pg, vl, ent_mean, grad_norm = self.minibatch_step(
                    d, perm[start : start + mb_size], clipped
                )
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
        self, d: dict[str, Tensor], idx: Tensor, policy_loss: Callable
    ) -> tuple[Any, Tensor, Tensor, Tensor]:
        """One optimizer step on the minibatch ``idx``: ``policy_loss(logp, old_logp, adv)``
        (clipped surrogate, or the KL-penalty one) + value loss - entropy bonus."""
        cfg, agent = self.cfg, self.agent
        logp, ent, v = agent.evaluate(
            d["obs"][idx], d["actions"][idx], entropy_grad=cfg.entropy_coef != 0
        )
        adv = d["adv"][:, idx]
        if cfg.norm_adv and len(idx) > 1:
            adv = whiten(adv)
        pg = policy_loss(logp.view(1, -1), d["old_logp"][:, idx], adv)
        vf_clip = cfg.clip_eps_value if cfg.clip_vloss else None
        vl = value_loss(
            v.view(1, -1), d["ret"][:, idx], old_values=d["old_v"][:, idx], clip_eps=vf_clip
        )
        ent_mean = ent.mean()
        grad_norm = self.step(pg.loss - cfg.entropy_coef * ent_mean + cfg.vf_coef * vl)
        return pg, vl, ent_mean, grad_norm
