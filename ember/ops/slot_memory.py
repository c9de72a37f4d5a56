"""The plasticity loop shared by slot memories (procedural and episodic), SPEC 3.2.

Letters: b batch, n tokens, m slots (r for PM, M for EM), c write candidates, d width.

Per token: read the slots (fixed within a plasticity period, so a period's reads run in
parallel) and feed the span's write candidates (eligibility traces for PM, the most salient
tokens for EM). At every boundary (each `period` tokens, a clock shared by the batch, and at
a session end through `flush`) the controller reads a summary of the span and the memory
commits its candidates.

A chunk of n tokens splits into segments at the boundaries. Only what depends on the slots is
sequential, one step per segment: read, surprise, controller, commit. The write candidates and
the pooled input of every segment do not depend on the slots, so they are computed for all
segments at once before the loop (`segment_candidates`, whose per-segment reference is
`accumulate`; tests hold the two together). The commit:

    K <- normalize(K + g w (k - K)),  V <- V + g w (v - V),  s <- clamp(lam s + g eta w, 0, 1)

where the memory's `select` chooses the slot weights w. Subclasses define `read`,
`init_candidates`, `accumulate` and `commit`.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.base import Modulation, Neuromodulator, SpanSummary
from ember.errors import EmberConfigError
from ember.state import StateBase


@dataclass
class SlotMemoryState(StateBase):
    """Fast state of one slot memory, per stream.

    K, V: (b, m, d) slot keys (unit norm once written) and values; s: (b, m) strengths in [0, 1];
    cand: the open span's write candidates (a StateBase of the memory's own kind);
    pooled, surprise: (b, d), (b,) sums over the open span;
    tokens: () tokens since the last boundary (shared by the batch: boundaries are batch-wide);
    commit_rate: (b,) mean gate of the boundaries of the last call (for logging);
    aux_loss: () controller loss of the last call (e.g. the commit budget);
    recent: (b, conv - 1, 3d) the last projected queries, keys and values, the short convolution's past.
    """

    K: Tensor
    V: Tensor
    s: Tensor
    cand: StateBase
    pooled: Tensor
    surprise: Tensor
    tokens: Tensor
    commit_rate: Tensor
    aux_loss: Tensor
    recent: Tensor


def segment_onehot(bounds: list[tuple[int, int]], like: Tensor) -> Tensor:
    """(n, segments) matrix with 1 where token t lies in segment [start, stop), in like's dtype and device."""
    t = torch.arange(bounds[-1][1], device=like.device)[:, None]  # (n, 1)
    starts = torch.tensor([start for start, _ in bounds], device=like.device)
    stops = torch.tensor([stop for _, stop in bounds], device=like.device)
    return ((t >= starts) & (t < stops)).to(like.dtype)


def relative_error(target: Tensor, read: Tensor) -> Tensor:
    """||target - read||^2 / ||target||^2 per token: (b, n, d) x2 -> (b, n), scale-free surprise."""
    return (target - read).pow(2).sum(-1) / target.pow(2).sum(-1).clamp_min(1e-12)


class SlotMemoryMixin:
    """Period loop, span summary, controller and projections; mixed into a memory plugin class.

    `enabled` (True unless `memories_off` clears it) switches reads and writes off together: the
    read-out is zero and the state passes through unchanged, which is the slow-weight model alone.
    """

    enabled: bool = True
    fused_period: Callable | None = None  # `whole_period` compiled, set by compile_plasticity

    def _setup(self, d_model: int, slots: int, neuromodulator: Callable[[int], Neuromodulator], period: int,
               conv: int = 1):
        if period < 1:
            raise EmberConfigError(f"period={period} must be >= 1")
        if conv < 1:
            raise EmberConfigError(f"conv={conv} is a kernel size in tokens: use 1 (no convolution) or more")
        self.d_model, self.slots, self.period, self.conv = d_model, slots, period, conv
        self.controller = neuromodulator(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        # short causal depthwise convolution over the projected q, k, v: a key can name the token before
        # its value (the pair an associative recall needs) without a layer learning to copy it first
        self.qkv_conv = nn.Conv1d(3 * d_model, 3 * d_model, conv, groups=3 * d_model, bias=False) if conv > 1 else None
        self.out = nn.Linear(d_model, d_model, bias=False)
        nn.init.zeros_(self.out.weight)  # an empty memory starts as an exact no-op

    # ---- what a memory kind defines -------------------------------------------------------
    def read(self, q: Tensor, K: Tensor, V: Tensor, s: Tensor) -> Tensor:
        """q (b, n, d) against the slots -> (b, n, d)."""
        raise NotImplementedError

    def init_candidates(self, batch: int, device, dtype) -> StateBase:
        """Empty write candidates of a fresh span."""
        raise NotImplementedError

    def accumulate(self, cand: StateBase, x: Tensor, k: Tensor, v: Tensor, offset: int) -> StateBase:
        """Feed the tokens x, k, v (b, n, d) of the open span (starting at span position offset)."""
        raise NotImplementedError

    def segment_candidates(self, cand: StateBase, x: Tensor, k: Tensor, v: Tensor, bounds: list[tuple[int, int]],
                           offset: int) -> list[StateBase]:
        """The candidates after each segment [start, stop) of `bounds`: the first segment continues `cand`
        (its span began `offset` tokens earlier), every later one starts a fresh span.

        This reference feeds the segments one by one through `accumulate`; a memory kind may compute
        them all at once (it must agree with this).
        """
        out = []
        for i, (start, stop) in enumerate(bounds):
            first = cand if i == 0 else self.init_candidates(x.shape[0], x.device, x.dtype)
            out.append(self.accumulate(first, x[:, start:stop], k[:, start:stop], v[:, start:stop],
                                       offset if i == 0 else 0))
        return out

    def commit(self, K: Tensor, V: Tensor, s: Tensor, cand: StateBase,
               mod: Modulation) -> tuple[Tensor, Tensor, Tensor]:
        """Write the span's candidates at a boundary; returns the new K, V, s."""
        raise NotImplementedError

    # ---- the loop -------------------------------------------------------------------------
    def init_state(self, batch: int, device, dtype) -> SlotMemoryState:
        z = lambda *shape: torch.zeros(*shape, device=device, dtype=dtype)  # noqa: E731
        b, m, d = batch, self.slots, self.d_model
        return SlotMemoryState(z(b, m, d), z(b, m, d), z(b, m), self.init_candidates(b, device, dtype), z(b, d),
                               z(b), torch.zeros((), dtype=torch.long, device=device), z(b), z(()),
                               z(b, self.conv - 1, 3 * d))

    def segments(self, n: int, tokens: int) -> list[tuple[int, int]]:
        """Split n new tokens at the boundaries, given `tokens` already in the open span: [(start, stop), ...]."""
        bounds, start = [], 0
        while start < n:
            stop = min(n, start + self.period - (tokens if start == 0 else 0))
            bounds.append((start, stop))
            start = stop
        return bounds

    def forward(self, x: Tensor, state: SlotMemoryState | None = None) -> tuple[Tensor, SlotMemoryState]:
        """x: (b, n, d) normalised input -> read-out (b, n, d) and the memory state (carries state)."""
        st = state if state is not None else self.init_state(x.shape[0], x.device, x.dtype)
        if not self.enabled:
            return x.new_zeros(x.shape), st
        qkv, recent = self.mix_recent(self.qkv(x), st.recent)
        reads, new = self._plasticity_loop(st, state is None, recent, x, *qkv.chunk(3, dim=-1))
        return self.out(reads), new

    def mix_recent(self, qkv: Tensor, recent: Tensor) -> tuple[Tensor, Tensor]:
        """The short convolution, causal across chunks: y_t = sum_j w_j qkv_{t-j}, j < conv, per channel.

        qkv: (b, n, 3d) projections of this chunk; recent: (b, conv - 1, 3d) those before it.
        Returns y (b, n, 3d) and the new `recent`.
        """
        if self.qkv_conv is None:
            return qkv, recent
        full = torch.cat([recent.to(qkv.dtype), qkv], dim=1)  # (b, conv - 1 + n, 3d)
        mixed = F.conv1d(full.transpose(1, 2), self.qkv_conv.weight, groups=qkv.shape[-1]).transpose(1, 2)
        return mixed, full[:, full.shape[1] - (self.conv - 1):]

    @torch.compiler.disable
    def _plasticity_loop(self, st: SlotMemoryState, fresh: bool, recent: Tensor, x: Tensor, q: Tensor, k: Tensor,
                         v: Tensor) -> tuple[Tensor, SlotMemoryState]:
        """Reads (b, n, d) before the output projection, and the new state (with `recent` from `mix_recent`).

        Always eager: torch.compile would unroll the loop, one copy per segment, and compile time grows
        with the segments (16 segment steps of the quickstart took minutes on a CPU; a 16384-token chunk
        has 256 per memory). The projections around it still compile.
        """
        K, V, s, pooled, surprise = st.K, st.V, st.s, st.pooled, st.surprise
        # the clock decides the segment bounds (Python ints); a fresh state needs no read of it (no device sync)
        tokens, reads, gates, aux = 0 if fresh else int(st.tokens), [], [], x.new_zeros(())
        bounds = self.segments(x.shape[1], tokens)
        if len(bounds) == 1:  # decoding and short chunks: the reference directly, fewer small ops
            cands, seg_sums = [self.accumulate(st.cand, x, k, v, tokens)], x.sum(1, keepdim=True)
        else:  # slot-independent work of every segment at once
            cands = self.segment_candidates(st.cand, x, k, v, bounds, tokens)
            seg_sums = torch.einsum("bnd,ns->bsd", x, segment_onehot(bounds, x))  # (b, segments, d)
        sizes = [stop - start for start, stop in bounds]
        # one split, not a slice per segment: a slice's backward zero-fills a full-length gradient, so
        # per-segment slices would cost O(n x segments); split's backward is one concatenation
        q_seg, v_seg, sum_seg = q.split(sizes, dim=1), v.split(sizes, dim=1), seg_sums.unbind(1)
        for i, size in enumerate(sizes):
            if tokens == 0 and size == self.period:  # a whole period: one call, compiled by compile_plasticity
                # (a fresh state's first period, whose slots need no gradient yet, runs eager: one graph fewer)
                fused = self.fused_period and (K.requires_grad or not torch.is_grad_enabled())
                step = self.fused_period if fused else whole_period
                read, K, V, s, g, period_aux = step(self, K, V, s, cands[i], q_seg[i], v_seg[i], sum_seg[i])
                reads.append(read)
                gates.append(g)
                aux = aux + period_aux
                continue
            read = self.read(q_seg[i], K, V, s)  # memory is fixed within the period
            reads.append(read)
            surprise = surprise + relative_error(v_seg[i], read).sum(1)
            pooled = pooled + sum_seg[i]
            tokens += size
            if tokens == self.period:
                K, V, s, mod = self._boundary(K, V, s, cands[i], pooled, surprise, tokens)
                gates.append(mod.g)
                aux = aux + (mod.aux_loss if mod.aux_loss is not None else 0.0)
                pooled, surprise, tokens = torch.zeros_like(pooled), torch.zeros_like(surprise), 0
        cand = cands[-1] if tokens else self.init_candidates(x.shape[0], x.device, x.dtype)
        rate = torch.stack(gates, 1).mean(1) if gates else st.commit_rate
        new = SlotMemoryState(K, V, s, cand, pooled, surprise, torch.tensor(tokens, device=x.device), rate, aux,
                              recent)
        return torch.cat(reads, dim=1), new

    def _boundary(self, K, V, s, cand, pooled, surprise, tokens: int):
        mod = self.controller(SpanSummary(pooled / tokens, surprise / tokens, s.mean(-1)))
        K, V, s = self.commit(K, V, s, cand, mod)
        return K, V, s, mod

    def flush(self, state: SlotMemoryState) -> SlotMemoryState:
        """Session end: commit the open span now (a boundary before the period is full)."""
        tokens = int(state.tokens)
        if tokens == 0 or not self.enabled:
            return state
        K, V, s, mod = self._boundary(state.K, state.V, state.s, state.cand, state.pooled, state.surprise, tokens)
        z = torch.zeros_like
        b = state.s.shape[0]
        return SlotMemoryState(K, V, s, self.init_candidates(b, K.device, K.dtype), z(state.pooled),
                               z(state.surprise), z(state.tokens), mod.g, z(state.aux_loss), state.recent)


def whole_period(memory: SlotMemoryMixin, K: Tensor, V: Tensor, s: Tensor, cand: StateBase, q: Tensor, v: Tensor,
                 x_sum: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One whole plasticity period, from a fresh span to its boundary: read the P tokens' queries q (b, P, d)
    against the slots, measure the surprise against their values v, let the controller read the span
    (x_sum (b, d): the sum of its inputs) and commit the candidates. The loop's own steps, in one function
    so that `compile_plasticity` can compile it into a few dozen kernels instead of some 400 small ops
    (forward and backward) per period.

    Returns the reads (b, P, d), the new K, V, s, the gate g (b,) and the controller's loss ().
    """
    read = memory.read(q, K, V, s)
    tokens = q.shape[1]
    mod = memory.controller(SpanSummary(x_sum / tokens, relative_error(v, read).sum(1) / tokens, s.mean(-1)))
    K, V, s = memory.commit(K, V, s, cand, mod)
    return read, K, V, s, mod.g, mod.aux_loss if mod.aux_loss is not None else x_sum.new_zeros(())


def slot_memories(model: nn.Module) -> list[SlotMemoryMixin]:
    """Every slot memory (PM, EM) among the modules of `model`."""
    return [m for m in model.modules() if isinstance(m, SlotMemoryMixin)]


def compile_plasticity(model: nn.Module, enable: bool = True, mode: str | None = None) -> int:
    """torch.compile the whole-period step of every slot memory of `model` (or go back to eager with
    enable=False); returns how many memories it set. `mode` is torch.compile's (e.g. "reduce-overhead"
    for CUDA graphs on a GPU).

    The plasticity loop is sequential over periods and always eager (it would unroll when compiled
    as a whole), so each period costs 330 (PM) to 410 (EM) small ops forward and backward, 210-230 of
    them kernels; on a GPU, launches, 256 periods per memory at 16384 tokens (P=64). Compiled, a whole
    period is one graph per memory kind of 24 (PM) or 39 (EM) kernels (BENCHMARKS 5); partial periods
    (a chunk that starts or ends mid-period, decoding) stay eager. Compiling takes tens of seconds
    once, so it is off by default: `ember bench` turns it on with --compile (the default on CUDA),
    `ember fit` with model.compile_periods.
    """
    memories = slot_memories(model)
    steps = {kind: _compiled_period(kind, mode) for kind in {type(m) for m in memories}} if enable else {}
    for memory in memories:
        memory.fused_period = steps.get(type(memory))
    return len(memories)


def _compiled_period(kind: type, mode: str | None) -> Callable:
    """`whole_period` compiled for one memory kind, under its own code object: dynamo caches graphs (and
    counts recompiles, 8 at most) per code object, and each kind needs its own for training and evaluation."""
    code = whole_period.__code__.replace(co_name=f"whole_period_{kind.__name__}")
    return torch.compile(types.FunctionType(code, whole_period.__globals__, code.co_name), mode=mode)


@contextmanager
def memories_off(model: nn.Module) -> Iterator[int]:
    """Inside the block every slot memory of `model` neither reads nor writes; yields how many there are."""
    memories = slot_memories(model)
    before = [memory.enabled for memory in memories]  # restored as they were, so the blocks can nest
    for memory in memories:
        memory.enabled = False
    try:
        yield len(memories)
    finally:
        for memory, enabled in zip(memories, before):
            memory.enabled = enabled
