"""Anchors: what keeps a sleep from wrecking what the slow weights already know (SPEC 3.7, seed 001).

Chosen by class in a consolidator's `anchor`. theta are the owned slow weights, theta0 their values before the
sleep; both penalties are summed over every owned weight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.base import Anchor
from ember.errors import EmberConfigError, EmberDataError
from ember.sleep import student_logits


def _check_weight(weight: float, name: str):
    if not weight >= 0:
        raise EmberConfigError(f"{name}.weight={weight} must be >= 0 (0: no anchor)")


class L2SP(Anchor):
    """L2-SP: the squared distance to the pre-sleep weights.

    Li et al. 2018:
        penalty = weight / 2 * sum_i (theta_i - theta0_i)^2.

    Args:
        weight: strength of the pull back to the pre-sleep weights.
    """

    def __init__(self, weight: float = 1.0):
        _check_weight(weight, "L2SP")
        self.weight = weight
        self.reference: dict[str, Tensor] = {}

    def prepare(self, model: nn.Module, params: dict[str, nn.Parameter], general: list[Tensor]) -> None:
        self.reference = {name: p.detach().clone() for name, p in params.items()}

    def penalty(self, params: dict[str, nn.Parameter]) -> Tensor:
        total = sum((p - self.reference[name]).pow(2).sum() for name, p in params.items())
        return 0.5 * self.weight * total


def diagonal_fisher(nll: Callable[[Tensor], Tensor], params: dict[str, nn.Parameter],
                    samples: Sequence[Tensor]) -> dict[str, Tensor]:
    """The empirical diagonal Fisher information F_i = 1/S sum_s (d nll(x_s) / d theta_i)^2 over the samples x_s,
    one sample at a time (a batch's gradient would square the mean, not average the squares)."""
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    for sample in samples:
        grads = torch.autograd.grad(nll(sample), list(params.values()), allow_unused=True)
        for (name, _), g in zip(params.items(), grads):
            if g is not None:
                fisher[name] += g.detach().pow(2)
    return {name: f / len(samples) for name, f in fisher.items()}


class EWC(Anchor):
    """Elastic weight consolidation: the distance to the pre-sleep weights, each by its Fisher information.

    Kirkpatrick et al. 2017: each weight is held by how much general text depends on it,
        penalty = weight / 2 * sum_i F_i (theta_i - theta0_i)^2,
    F the empirical diagonal Fisher of the memory-OFF model's mean next-byte loss over general-text sequences
    (`diagonal_fisher`, one sequence at a time), normalised so that its mean over the owned weights is 1 (so
    `weight` has the scale of L2SP's).

    Args:
        weight: strength of the pull back to the pre-sleep weights.
        sequences: at most this many general-text sequences estimate F (one backward pass each).
    """

    def __init__(self, weight: float = 1.0, sequences: int = 16):
        _check_weight(weight, "EWC")
        if sequences < 1:
            raise EmberConfigError(f"EWC.sequences={sequences} must be >= 1")
        self.weight, self.sequences = weight, sequences
        self.reference: dict[str, Tensor] = {}
        self.fisher: dict[str, Tensor] = {}

    def prepare(self, model: nn.Module, params: dict[str, nn.Parameter], general: list[Tensor]) -> None:
        if not general:
            raise EmberDataError("the EWC anchor estimates its Fisher information from general text, and this sleep "
                                 "has none: give general text (the data module's, or --general for ember sleep), or "
                                 "use the L2SP anchor")
        self.reference = {name: p.detach().clone() for name, p in params.items()}

        def nll(tokens: Tensor) -> Tensor:
            logits = student_logits(model, tokens)
            return F.cross_entropy(logits, tokens[1:].to(logits.device))

        with torch.enable_grad():
            fisher = diagonal_fisher(nll, params, list(general)[: self.sequences])
        mean = torch.cat([f.flatten() for f in fisher.values()]).mean().clamp_min(1e-30)
        self.fisher = {name: f / mean for name, f in fisher.items()}

    def penalty(self, params: dict[str, nn.Parameter]) -> Tensor:
        total = sum((self.fisher[name] * (p - self.reference[name]).pow(2)).sum() for name, p in params.items())
        return 0.5 * self.weight * total
