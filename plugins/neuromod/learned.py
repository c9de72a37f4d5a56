"""LearnedNeuromodulator: a small MLP trained through the main loss, with a commit budget."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ember.base import Modulation, Neuromodulator, SpanSummary
from ember.errors import EmberConfigError


class LearnedNeuromodulator(Neuromodulator):
    """MLP over [pooled state, surprise, occupancy, modulation] -> (g, eta, lambda, tau).

    g, eta, lambda = sigmoid(.), tau = softplus(.) + 0.05. The memory updates are
    differentiable in these outputs, so the main loss trains the controller; the budget
    term budget_weight * (mean g - target_rate)^2 keeps commits sparse.

    Args:
        d_model: width of the pooled state it reads.
        hidden: hidden width of the MLP.
        modulation_dim: size of the external modulation vector it reads (0: none).
        target_rate: mean commit gate the budget term aims at.
        budget_weight: weight of the budget term in the training loss.
        init_decay: initial lambda (strength decay) before training.
    """

    def __init__(self, d_model: int, hidden: int = 32, modulation_dim: int = 0, target_rate: float = 0.1,
                 budget_weight: float = 0.01, init_decay: float = 0.99):
        super().__init__()
        if not 0 < target_rate < 1 or not 0 < init_decay < 1:
            raise EmberConfigError(f"target_rate={target_rate} and init_decay={init_decay} must be in (0, 1)")
        if hidden < 1 or modulation_dim < 0 or not 0 <= budget_weight < math.inf:
            raise EmberConfigError(f"hidden={hidden} must be >= 1, modulation_dim={modulation_dim} >= 0 and "
                                   f"budget_weight={budget_weight} finite and >= 0")
        self.modulation_dim, self.target_rate, self.budget_weight = modulation_dim, target_rate, budget_weight
        self.net = nn.Sequential(nn.Linear(d_model + 2 + modulation_dim, hidden), nn.SiLU(), nn.Linear(hidden, 4))
        with torch.no_grad():  # start near the budget, mid strength, slow decay, moderate temperature
            self.net[-1].bias.copy_(torch.tensor([math.log(target_rate / (1 - target_rate)), 0.0,
                                                  math.log(init_decay / (1 - init_decay)), 0.0]))

    def forward(self, summary: SpanSummary) -> Modulation:
        parts = [summary.pooled, summary.surprise[:, None], summary.occupancy[:, None]]
        if self.modulation_dim:
            modulation = summary.modulation
            if modulation is None:
                modulation = summary.pooled.new_zeros(summary.pooled.shape[0], self.modulation_dim)
            parts.append(modulation)
        g, eta, lam, tau = self.net(torch.cat(parts, dim=-1)).unbind(-1)
        g = torch.sigmoid(g)
        budget = self.budget_weight * (g.mean() - self.target_rate) ** 2
        return Modulation(g, torch.sigmoid(eta), torch.sigmoid(lam), F.softplus(tau) + 0.05, budget)


