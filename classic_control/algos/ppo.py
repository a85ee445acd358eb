"""PPO-clip: GAE, epochs over shuffled minibatches, clipped policy and value losses."""

from __future__ import annotations

import torch
from torch import Tensor

from rlhf_pg.core import explained_variance, ppo_clip_loss, value_loss, whiten

from ..rollout import Batch
from .base import Algorithm, unchecked_core

_LOGGED = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac", "grad_norm")


class PPO(Algorithm):
    def update(self, b: Batch, progress_left: float) -> dict[str, float]:
        cfg = self.cfg
        adv, ret = self.advantages(b)
        n = b.steps
        flat = {
            "obs": b.obs.reshape(n, -1),
            "actions": b.actions.reshape(n, *b.actions.shape[2:]),
            # the core wants (batch, time): a flat minibatch is one row
            "old_logp": b.logprobs.reshape(1, n),
            "old_v": b.values.reshape(1, n),
            "adv": adv.reshape(1, n),
            "ret": ret.reshape(1, n),
        }
        clip = max(cfg.clip_coef * (progress_left if cfg.anneal_clip else 1.0), 1e-8)
        with unchecked_core():
            logs, epochs = self._epochs(flat, clip)
        self.check_losses(logs)
        metrics = dict(zip(_LOGGED, logs.mean(0).tolist()))
        metrics.update(
            explained_var=explained_variance(b.values, ret), epochs=epochs, clip_coef=clip
        )
        return metrics

    def _epochs(self, d: dict[str, Tensor], clip: float) -> tuple[Tensor, int]:
        cfg, agent = self.cfg, self.agent
        n = d["obs"].shape[0]
        mb_size = n // cfg.num_minibatches
        vf_clip = cfg.vf_clip_coef if cfg.clip_vloss else None
        logs: list[Tensor] = []
        for epoch in range(cfg.update_epochs):
            perm = torch.randperm(n)
            epoch_kl = []
            for start in range(0, n, mb_size):
                idx = perm[start : start + mb_size]
                logp, ent, v = agent.evaluate(
                    d["obs"][idx], d["actions"][idx], entropy_grad=cfg.ent_coef != 0
                )
                adv = d["adv"][:, idx]
                if cfg.norm_adv and mb_size > 1:
                    adv = whiten(adv)
                pg = ppo_clip_loss(logp.view(1, -1), d["old_logp"][:, idx], adv, clip_eps=clip)
                vl = value_loss(
                    v.view(1, -1), d["ret"][:, idx], old_values=d["old_v"][:, idx], clip_eps=vf_clip
                )
                ent_mean = ent.mean()
                grad_norm = self.step(pg.loss - cfg.ent_coef * ent_mean + cfg.vf_coef * vl)
                logs.append(
                    torch.stack(
                        [pg.loss, vl, ent_mean, pg.approx_kl, pg.clip_fraction, grad_norm]
                    ).detach()
                )
                epoch_kl.append(pg.approx_kl)
            if cfg.target_kl is not None and float(torch.stack(epoch_kl).mean()) > cfg.target_kl:
                return torch.stack(logs), epoch + 1
        return torch.stack(logs), cfg.update_epochs
