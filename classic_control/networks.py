"""Actor-critic MLPs: categorical policy for Discrete actions, diagonal Gaussian for Box.

Orthogonal init (hidden layers gain sqrt(2), policy head 0.01, value head 1,
zero biases): the near-uniform initial policy and unit-scale values are part
of what makes PPO learn reliably on these tasks. Distributions are written
out by hand on plain tensors; ``torch.distributions`` costs more Python per
call than the network itself at these sizes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rlhf_pg.core import entropy as categorical_entropy

from .config import Config
from .envs import EnvSpec

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _linear(n_in: int, n_out: int, gain: float) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _body(n_in: int, sizes: list[int], activation: str) -> tuple[nn.Sequential, int]:
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [_linear(n_in, size, math.sqrt(2)), act()]
        n_in = size
    return nn.Sequential(*layers), n_in


class ActorCritic(nn.Module):
    """Policy and value function; separate MLPs unless ``shared_network``."""

    def __init__(self, spec: EnvSpec, cfg: Config) -> None:
        super().__init__()
        self.discrete = spec.discrete
        self.shared = cfg.shared_network
        sizes, act = list(cfg.hidden_sizes), cfg.activation
        self.actor_body, width = _body(spec.obs_dim, sizes, act)
        self.critic_body = None if self.shared else _body(spec.obs_dim, sizes, act)[0]
        self.policy_head = _linear(width, spec.act_dim, 0.01)
        self.value_head = _linear(width, 1, 1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((spec.act_dim,), float(cfg.init_log_std)))

    def _features(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        h = self.actor_body(obs)
        return h, (h if self.critic_body is None else self.critic_body(obs))

    def value(self, obs: Tensor) -> Tensor:
        """V(s), shape (B,)."""
        h = self.actor_body(obs) if self.critic_body is None else self.critic_body(obs)
        return self.value_head(h).squeeze(-1)

    def policy_out(self, obs: Tensor) -> Tensor:
        """Logits (discrete) or Gaussian means (continuous)."""
        return self.policy_head(self.actor_body(obs))

    def _logprob(self, out: Tensor, actions: Tensor) -> Tensor:
        if self.discrete:
            logp = torch.log_softmax(out, dim=-1)
            return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        z = (actions - out) * torch.exp(-self.log_std)
        return (-0.5 * z.pow(2) - self.log_std - _LOG_SQRT_2PI).sum(-1)

    def _entropy(self, out: Tensor) -> Tensor:
        if self.discrete:
            return categorical_entropy(out)
        per_dim = self.log_std + 0.5 + _LOG_SQRT_2PI
        return per_dim.sum().expand(out.shape[0])

    def sample(self, out: Tensor) -> Tensor:
        if self.discrete:
            return torch.multinomial(torch.softmax(out, dim=-1), 1).squeeze(-1)
        return out + torch.exp(self.log_std) * torch.randn_like(out)

    def mode(self, obs: Tensor) -> Tensor:
        """The deterministic action used for evaluation."""
        out = self.policy_out(obs)
        return out.argmax(-1) if self.discrete else out

    def act(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sample actions for a batch of observations: (actions, log-probs, values)."""
        h_pi, h_v = self._features(obs)
        out = self.policy_head(h_pi)
        actions = self.sample(out)
        return actions, self._logprob(out, actions), self.value_head(h_v).squeeze(-1)

    def evaluate(
        self, obs: Tensor, actions: Tensor, *, entropy_grad: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Log-probs, entropies and values of stored (obs, action) pairs, with grad.

        ``entropy_grad=False`` (no entropy bonus) keeps the entropy out of the
        autograd graph: it is then only logged, and backward has fewer nodes.
        """
        h_pi, h_v = self._features(obs)
        out = self.policy_head(h_pi)
        if entropy_grad:
            ent = self._entropy(out)
        else:
            with torch.no_grad():
                ent = self._entropy(out.detach())
        return self._logprob(out, actions), ent, self.value_head(h_v).squeeze(-1)
