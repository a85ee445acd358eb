"""Actor-critic MLPs: categorical policy for Discrete actions, diagonal Gaussian for Box.

Orthogonal init (hidden layers gain sqrt(2), policy head 0.01, value head 1,
zero biases): the near-uniform initial policy and unit-scale values are part
of what makes PPO learn reliably on these tasks. Distributions are written
out by hand on plain tensors; ``torch.distributions`` costs more Python per
call than the network itself at these sizes. For the same reason each MLP stores its
weights (in, out) and runs one ``addmm`` per layer (see :class:`MLP`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rlhf_pg.core import entropy as categorical_entropy

from .config import Config
from .envs import EnvSpec

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class MLP(nn.Module):
    r"""Affine layers with an activation between them (and after the last one if
    ``activate_last``): :math:`h_{i} = \sigma(h_{i-1} W_i + b_i)`, :math:`h_0 = x`.

    Each layer is one ``torch.addmm(b_i, h, W_i)`` with :math:`W_i` stored (in, out), the
    layout ``addmm`` multiplies by as it is. ``nn.Linear`` stores (out, in) and transposes
    on every call: at these sizes (64-64 on 256 rows) the transposes, forward and backward
    (17 of the ~225 tensor ops of a PPO minibatch), and one module call per layer are a
    large share of the time. Same function as ``nn.Sequential(nn.Linear, act, ...)``
    holding the transposed weights (``tests/test_classic_networks.py``); 15% less time
    for the actor's and critic's forward+backward (micro-benchmark, 256 rows).

    Orthogonal init of the (out, in) matrix, as ``nn.init.orthogonal_`` does for an
    ``nn.Linear`` (same numbers for the same seed), gain ``gain``; zero biases.
    """

    def __init__(
        self, dims: list[int], activation: str, gain: float, *, activate_last: bool
    ) -> None:
        super().__init__()
        self.act = {"tanh": torch.tanh, "relu": torch.relu}[activation]
        self.activate_last = activate_last
        self.layers = nn.ModuleList(
            _Affine(n_in, n_out, gain) for n_in, n_out in zip(dims, dims[1:])
        )

    def forward(self, x: Tensor) -> Tensor:
        """(..., in) -> (..., out), like ``nn.Linear``; addmm itself takes (rows, in)."""
        lead = x.shape[:-1]
        if x.ndim != 2:
            x = x.reshape(-1, x.shape[-1])
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):  # the layers hold weights; no module call each
            x = torch.addmm(layer.bias, x, layer.weight)
            if i < last or self.activate_last:
                x = self.act(x)
        return x if len(lead) == 1 else x.view(*lead, -1)


class _Affine(nn.Module):
    """The parameters of one layer of :class:`MLP`: ``weight`` (in, out), ``bias`` (out,)."""

    def __init__(self, n_in: int, n_out: int, gain: float) -> None:
        super().__init__()
        # initialised as an nn.Linear, so a seed draws the same network as it always did
        linear = nn.Linear(n_in, n_out)
        nn.init.orthogonal_(linear.weight, gain)
        self.weight = nn.Parameter(linear.weight.detach().t().contiguous())
        self.bias = nn.Parameter(torch.zeros(n_out))


def _body(n_in: int, sizes: list[int], activation: str) -> MLP:
    return MLP([n_in, *sizes], activation, math.sqrt(2), activate_last=True)


def _head(n_in: int, n_out: int, gain: float) -> MLP:
    return MLP([n_in, n_out], "tanh", gain, activate_last=False)  # one layer: no activation


def upgrade_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """An :class:`ActorCritic` state dict of the ``nn.Linear`` layout (before 2026-11-30:
    ``actor_body.2.weight`` (out, in), ``policy_head.weight``) in today's names and
    (in, out) layout; a state dict of today's layout comes back as it is."""
    new: dict[str, Tensor] = {}
    for key, value in state.items():
        part, *rest = key.split(".")
        if part in ("actor_body", "critic_body") and len(rest) == 2 and rest[0].isdigit():
            index, name = int(rest[0]) // 2, rest[1]  # Sequential(Linear, act, Linear, act)
        elif part in ("policy_head", "value_head") and len(rest) == 1:
            index, name = 0, rest[0]
        else:
            new[key] = value
            continue
        new[f"{part}.layers.{index}.{name}"] = value.t().contiguous() if name == "weight" else value
    return new


def is_linear_layout(state: dict[str, Tensor]) -> bool:
    """Whether ``state`` holds an :class:`ActorCritic` of the old ``nn.Linear`` layout."""
    return any(k in state for k in ("policy_head.weight", "value_head.weight"))


def upgrade_optimizer_state(state: dict) -> dict:
    """An optimiser state dict of an ``nn.Linear``-layout :class:`ActorCritic` for today's
    layout: the per-parameter moments (Adam's ``exp_avg``, RMSprop's ``square_avg``, ...)
    have their parameter's shape, and the 2-D ones, the weights', are transposed. The
    parameters keep their order (each layer: weight, then bias), so indices still match."""
    moments = {
        index: {k: v.t().contiguous() if v.ndim == 2 else v for k, v in per_param.items()}
        for index, per_param in state["state"].items()
    }
    return {**state, "state": moments}


class ActorCritic(nn.Module):
    """Policy and value function; separate MLPs unless ``shared_network``."""

    def __init__(self, spec: EnvSpec, cfg: Config) -> None:
        super().__init__()
        self.discrete = spec.discrete
        self.shared = cfg.shared_network
        sizes, act = list(cfg.hidden_sizes), cfg.activation
        width = sizes[-1]  # Config.check: at least one hidden layer
        self.actor_body = _body(spec.obs_dim, sizes, act)
        self.critic_body = None if self.shared else _body(spec.obs_dim, sizes, act)
        self.policy_head = _head(width, spec.act_dim, 0.01)
        self.value_head = _head(width, 1, 1.0)
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
