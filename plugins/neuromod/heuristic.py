"""HeuristicNeuromodulator: commit when surprise exceeds a threshold (the ablation baseline)."""

from __future__ import annotations

import torch

from ember.base import Modulation, Neuromodulator, SpanSummary
from ember.errors import EmberConfigError


class HeuristicNeuromodulator(Neuromodulator):
    """Commit (g = 1) when the span's surprise exceeds a threshold, else g = 0; fixed eta, decay, tau.

    Args:
        d_model: width of the host memory (unused; factories pass it to every controller).
        threshold: surprise above which the memory commits.
        eta: write strength of a commit.
        decay: strength decay lambda applied at every boundary.
        tau: slot-selection temperature.
    """

    def __init__(self, d_model: int, threshold: float = 0.9, eta: float = 0.5, decay: float = 0.99,
                 tau: float = 0.5):
        super().__init__()
        if not (0 <= eta <= 1 and 0 <= decay <= 1 and tau > 0):
            raise EmberConfigError(f"eta={eta} and decay={decay} must be in [0, 1] and tau={tau} > 0")
        self.threshold, self.eta, self.decay, self.tau = threshold, eta, decay, tau

    def forward(self, summary: SpanSummary) -> Modulation:
        g = (summary.surprise > self.threshold).to(summary.pooled.dtype)
        full = lambda v: torch.full_like(g, v)  # noqa: E731
        return Modulation(g, full(self.eta), full(self.decay), full(self.tau))
