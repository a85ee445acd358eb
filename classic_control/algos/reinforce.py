"""REINFORCE on batches of whole episodes: reward-to-go (or the whole-episode return),
optional learned baseline."""

from __future__ import annotations

import torch

from rlhf_pg.core import (
    discounted_returns,
    explained_variance,
    kl_k3,
    masked_mean,
    reinforce_loss,
    value_loss,
    whiten,
)

from ..config import Config, ConfigError, check_positive
from ..envs import EnvSpec
from ..rollout import Batch, Collector, EpisodeCollector
from .base import Algorithm

RETURN_MODES = ("reward_to_go", "total")


def episode_weights(returns: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """The per-step weight of log pi(a_t|s_t) in the policy gradient of one episode per row.

    ``reward_to_go``: G_t (an action cannot change the rewards before it);
    ``total``: G_0, the whole episode's discounted return, at every step (the
    lecture's first, higher-variance form; same expectation up to the discount weight).
    """
    if mode == "reward_to_go":
        return returns
    return torch.where(mask, returns[:, :1].expand_as(returns), torch.zeros_like(returns))


class Reinforce(Algorithm):
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        check_positive("episodes_per_batch", cfg.episodes_per_batch)
        if cfg.return_mode not in RETURN_MODES:
            raise ConfigError(
                f"unknown return_mode {cfg.return_mode!r}; valid: {', '.join(RETURN_MODES)}"
            )

    def make_collector(self, env_id: str, spec: EnvSpec) -> Collector:
        """Whole episodes, ``episodes_per_batch`` at a time."""
        return EpisodeCollector(env_id, spec, self.cfg, self.agent)

    def update(self, b: Batch, progress_left: float) -> dict[str, float]:
        cfg, agent, mask = self.cfg, self.agent, b.mask
        # rows are single episodes: a truncated one continues from V(final obs)
        bootstrap = b.bootstrap_value if cfg.use_baseline else None
        returns = discounted_returns(b.rewards, cfg.gamma, bootstrap_value=bootstrap, mask=mask)
        logp, ent, v = (x.view(mask.shape) for x in agent.evaluate(*b.flat()))
        weights = episode_weights(returns, mask, cfg.return_mode)
        if cfg.use_baseline:  # V(s_t) depends on the state only: the expectation is unchanged
            weights = weights - v.detach()
        if cfg.norm_returns:  # across the whole batch, so longer episodes keep their weight
            weights = whiten(weights, mask)
        pg = reinforce_loss(logp, weights, mask)
        ent_mean = masked_mean(ent, mask)
        loss = pg - cfg.entropy_coef * ent_mean
        vl = torch.zeros(())
        if cfg.use_baseline:
            vl = value_loss(v, returns, mask)
            loss = loss + cfg.vf_coef * vl
        grad_norm = self.step(loss)
        with torch.inference_mode():
            new_logp = agent.evaluate(*b.flat())[0].view(mask.shape)
            kl = masked_mean(kl_k3(b.logprobs, new_logp), mask)
        m = torch.stack([pg.detach(), vl.detach(), ent_mean.detach(), kl, grad_norm]).tolist()
        out = {
            "loss/policy": m[0],
            "loss/value": m[1],
            "loss/entropy": m[2],
            "policy/approx_kl": m[3],
            "grad_norm": m[4],
            "reinforce/episodes": mask.shape[0],
        }
        if cfg.use_baseline:
            out["value/explained_variance"] = explained_variance(v.detach(), returns, mask)
        return out
