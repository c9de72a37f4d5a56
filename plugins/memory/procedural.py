"""LowRankPM: procedural memory as r fast key/value slots per layer (SPEC 3.2, seed 003).

Letters: b batch, n tokens, r slots, d width.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ember.base import Modulation, Neuromodulator, ProceduralMemory
from ember.errors import EmberConfigError
from ember.ops.plasticity import eligibility, pm_commit, pm_read, slot_weights
from ember.ops.slot_memory import SlotMemory, SlotRule, segment_onehot
from ember.state import StateBase


@dataclass
class TraceCandidates(StateBase):
    """PM write candidate of the open span: eligibility traces e_k, e_v (b, d)."""

    e_k: Tensor
    e_v: Tensor


class TraceRule(SlotRule):
    """The PM rule: attention over r slots, eligibility traces as the span's one candidate, a top-k soft write.

    Args:
        d_model: width d.
        slots: r.
        top_k: slots written per commit.
        beta: weight of slot weakness (1 - s) in slot selection.
        trace_decay: rho of the eligibility traces.
    """

    def __init__(self, d_model: int, slots: int, top_k: int, beta: float, trace_decay: float):
        super().__init__()
        if not 1 <= top_k <= slots:
            raise EmberConfigError(f"top_k={top_k} must be between 1 and slots={slots}")
        if not 0 <= trace_decay < 1:
            raise EmberConfigError(f"trace_decay={trace_decay} must be in [0, 1)")
        self.d_model, self.slots, self.top_k, self.beta, self.trace_decay = d_model, slots, top_k, beta, trace_decay

    def read(self, q: Tensor, K: Tensor, V: Tensor, s: Tensor) -> Tensor:
        return pm_read(q, K, V, s)

    def init_candidates(self, batch: int, device, dtype) -> TraceCandidates:
        return TraceCandidates(torch.zeros(batch, self.d_model, device=device, dtype=dtype),
                               torch.zeros(batch, self.d_model, device=device, dtype=dtype))

    def accumulate(self, cand: TraceCandidates, x: Tensor, k: Tensor, v: Tensor, offset: int) -> TraceCandidates:
        return TraceCandidates(eligibility(k, cand.e_k, self.trace_decay), eligibility(v, cand.e_v, self.trace_decay))

    def segment_candidates(self, cand: TraceCandidates, x: Tensor, k: Tensor, v: Tensor,
                           bounds: list[tuple[int, int]], offset: int) -> list[TraceCandidates]:
        """Every segment's traces in one matmul (`eligibility` per segment is the reference):

            e_i = rho^len(i) e_0 [i = 0] + sum_{t in i} (1 - rho) rho^(stop_i - 1 - t) x_t
        """
        rho, n = self.trace_decay, x.shape[1]
        onehot = segment_onehot(bounds, x)  # (n, segments)
        stops = torch.tensor([stop for _, stop in bounds], device=x.device, dtype=x.dtype)
        age = onehot @ stops - 1 - torch.arange(n, device=x.device, dtype=x.dtype)  # tokens after t in its segment
        traces = torch.einsum("bnd,ns->bsd", torch.cat([k, v], -1), onehot * ((1.0 - rho) * rho**age)[:, None])
        carry = rho ** bounds[0][1] * torch.cat([cand.e_k, cand.e_v], -1)  # the open span's traces, through segment 0
        e_k, e_v = torch.cat([traces[:, :1] + carry[:, None], traces[:, 1:]], 1).chunk(2, dim=-1)  # (b, segments, d)
        return [TraceCandidates(*pair) for pair in zip(e_k.unbind(1), e_v.unbind(1))]

    def commit(self, K: Tensor, V: Tensor, s: Tensor, cand: TraceCandidates, mod: Modulation):
        w = slot_weights(K, s, cand.e_k, mod.tau, self.beta, self.top_k)
        return pm_commit(K, V, s, cand.e_k, cand.e_v, w, mod.g, mod.eta, mod.lam)


class LowRankPM(SlotMemory, ProceduralMemory):
    """Procedural memory: r key/value/strength slots, eligibility traces, neuromodulated commits.

    Read:   y_t = W_o sum_i s_i softmax_i(q_t . K_i / sqrt(d)) V_i,  q = W_q x.
    Trace:  e_k <- rho e_k + (1 - rho) W_k x_t,  e_v <- rho e_v + (1 - rho) W_v x_t.
    Commit (every `period` tokens and at session ends; see ember.ops.plasticity.pm_commit):
            w = top-k softmax((cos(K, e_k) - beta (1 - s)) / tau),
            K <- normalize(K + g w (e_k - K)), V <- V + g w (e_v - V), s <- clamp(lam s + g eta w, 0, 1),
    with (g, eta, lam, tau) from the neuromodulator reading the span's mean input, surprise
    (mean over the span of ||W_v x_t - read_t||^2 / ||W_v x_t||^2: 1 when the memory predicts
    nothing, 0 when it predicts the span exactly) and occupancy (mean strength).

    Args:
        d_model: host width (passed by the backbone's factory).
        neuromodulator: controller factory, called with d_model (each PM gets its own).
        slots: r.
        period: plasticity period P in tokens.
        top_k: slots written per commit.
        beta: weight of slot weakness (1 - s) in slot selection.
        trace_decay: rho of the eligibility traces.
        conv: kernel in tokens of a short causal depthwise convolution over the projected queries, keys
            and values; 1 = none (4 did much worse on the argument-order patterns: BENCHMARKS 6).
    """

    def __init__(self, d_model: int, neuromodulator: Callable[[int], Neuromodulator], slots: int = 8,
                 period: int = 64, top_k: int = 2, beta: float = 0.5, trace_decay: float = 0.9, conv: int = 1):
        rule = functools.partial(TraceRule, slots=slots, top_k=top_k, beta=beta, trace_decay=trace_decay)
        super().__init__(d_model, rule, neuromodulator, period, conv)
