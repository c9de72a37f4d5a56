"""LowRankPM: procedural memory as r fast key/value slots per layer (SPEC 3.2, seed 003).

Letters: b batch, n tokens, r slots, d width.

Every token is read (O(r d)) and feeds a decaying eligibility trace; the trace alone never
changes memory. Every `period` tokens (a plasticity boundary) the neuromodulator reads a
summary of the span and decides the commit. Memory is fixed within a period, so the reads of
a period run in parallel; the periods of a chunk run in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ember.base import Modulation, Neuromodulator, ProceduralMemory, SpanSummary
from ember.errors import EmberConfigError
from ember.ops.plasticity import eligibility, pm_commit, pm_read, slot_weights
from ember.state import StateBase


@dataclass
class PMState(StateBase):
    """Fast state of one procedural memory, per stream.

    K, V: (b, r, d) slot keys (unit norm once written) and values; s: (b, r) strengths in [0, 1];
    e_k, e_v: (b, d) eligibility traces; pooled, surprise: (b, d), (b,) sums over the open span;
    tokens: () tokens since the last boundary (shared by the batch: boundaries are batch-wide);
    commit_rate: (b,) mean gate of the boundaries of the last call (for logging);
    aux_loss: () controller loss of the last call (e.g. the commit budget).
    """

    K: Tensor
    V: Tensor
    s: Tensor
    e_k: Tensor
    e_v: Tensor
    pooled: Tensor
    surprise: Tensor
    tokens: Tensor
    commit_rate: Tensor
    aux_loss: Tensor


def relative_error(target: Tensor, read: Tensor) -> Tensor:
    """||target - read||^2 / ||target||^2 per token: (b, n, d) x2 -> (b, n), scale-free surprise."""
    return (target - read).pow(2).sum(-1) / target.pow(2).sum(-1).clamp_min(1e-12)


class LowRankPM(ProceduralMemory):
    """Procedural memory: r key/value/strength slots, eligibility traces, neuromodulated commits.

    Read:   y_t = W_o sum_i s_i softmax_i(q_t . K_i / sqrt(d)) V_i,  q = W_q x.
    Trace:  e_k <- rho e_k + (1 - rho) W_k x_t,  e_v <- rho e_v + (1 - rho) W_v x_t.
    Commit (every `period` tokens; see ember.ops.plasticity.pm_commit):
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
    """

    def __init__(self, d_model: int, neuromodulator: Callable[[int], Neuromodulator], slots: int = 8,
                 period: int = 64, top_k: int = 2, beta: float = 0.5, trace_decay: float = 0.9):
        super().__init__()
        if not 1 <= top_k <= slots:
            raise EmberConfigError(f"top_k={top_k} must be between 1 and slots={slots}")
        if period < 1 or not 0 <= trace_decay < 1:
            raise EmberConfigError(f"period={period} must be >= 1 and trace_decay={trace_decay} in [0, 1)")
        self.d_model, self.slots, self.period, self.top_k = d_model, slots, period, top_k
        self.beta, self.trace_decay = beta, trace_decay
        self.controller = neuromodulator(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        nn.init.zeros_(self.out.weight)  # an empty memory starts as an exact no-op

    def init_state(self, batch: int, device, dtype) -> PMState:
        z = lambda *shape: torch.zeros(*shape, device=device, dtype=dtype)  # noqa: E731
        b, r, d = batch, self.slots, self.d_model
        return PMState(z(b, r, d), z(b, r, d), z(b, r), z(b, d), z(b, d), z(b, d), z(b),
                       torch.zeros((), dtype=torch.long, device=device), z(b), z(()))

    def forward(self, x: Tensor, state: PMState | None = None) -> tuple[Tensor, PMState]:
        """x: (b, n, d) normalised layer input -> read-out (b, n, d) and the PM state (carries state)."""
        st = state if state is not None else self.init_state(x.shape[0], x.device, x.dtype)
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # each (b, n, d)
        K, V, s, e_k, e_v, pooled, surprise = st.K, st.V, st.s, st.e_k, st.e_v, st.pooled, st.surprise
        tokens, reads, gates, aux = int(st.tokens), [], [], x.new_zeros(())
        start = 0
        while start < x.shape[1]:
            stop = min(x.shape[1], start + self.period - tokens)
            read = pm_read(q[:, start:stop], K, V, s)  # memory is fixed within the period
            reads.append(read)
            surprise = surprise + relative_error(v[:, start:stop], read).sum(1)
            pooled = pooled + x[:, start:stop].sum(1)
            e_k = eligibility(k[:, start:stop], e_k, self.trace_decay)
            e_v = eligibility(v[:, start:stop], e_v, self.trace_decay)
            tokens += stop - start
            if tokens == self.period:
                summary = SpanSummary(pooled / tokens, surprise / tokens, s.mean(-1))
                mod = self.controller(summary)
                K, V, s = self.commit(K, V, s, e_k, e_v, mod)
                gates.append(mod.g)
                aux = aux + (mod.aux_loss if mod.aux_loss is not None else 0.0)
                pooled, surprise, tokens = torch.zeros_like(pooled), torch.zeros_like(surprise), 0
            start = stop
        rate = torch.stack(gates, 1).mean(1) if gates else st.commit_rate
        new = PMState(K, V, s, e_k, e_v, pooled, surprise, torch.tensor(tokens, device=x.device), rate, aux)
        return self.out(torch.cat(reads, dim=1)), new

    def commit(self, K: Tensor, V: Tensor, s: Tensor, e_k: Tensor, e_v: Tensor, mod: Modulation):
        """Write the trace into the slots chosen by the controller (equations in the class docstring)."""
        w = slot_weights(K, s, e_k, mod.tau, self.beta, self.top_k)
        return pm_commit(K, V, s, e_k, e_v, w, mod.g, mod.eta, mod.lam)
