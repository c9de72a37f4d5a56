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

where the rule chooses the slot weights w. `SlotMemory` owns the loop; what differs between memory kinds
(how the slots are read, which candidates a span proposes, how they are committed) is a `SlotRule`
passed to its constructor (plugins/memory/procedural.py and episodic.py define theirs). One step function,
`period_step`, serves whole and partial periods; whole ones may run compiled (`compile_plasticity`).
"""

from __future__ import annotations

import dataclasses
import functools
import types
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.base import Modulation, Neuromodulator, SpanSummary
from ember.errors import EmberConfigError
from ember.ops.induction import InductionHead
from ember.state import StateBase


@dataclass
class SlotMemoryState(StateBase):
    """Fast state of one slot memory, per stream.

    K, V: (b, m, d) slot keys (unit norm once written) and values; s: (b, m) strengths in [0, 1];
    cand: the open span's write candidates (a StateBase of the memory's own kind);
    pooled, surprise: (b, d), (b,) sums over the open span;
    tokens: () tokens since the last boundary (shared by the batch: boundaries are batch-wide);
    commit_rate: (b,) mean gate of the boundaries of the last call (for logging);
    aux_loss: () training loss of the last call's controller (e.g. the commit budget) and rule;
    recent: (b, conv - 1, 3d) the last projected queries, keys and values, the short convolution's past;
    modulation: (b, k) the stream's external signals (sensory arousal/valence/threat; k = the controller's
    modulation_dim, 0 for a controller that reads none), part of every span summary (`SlotMemory.modulate`).
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
    modulation: Tensor


def segment_onehot(bounds: list[tuple[int, int]], like: Tensor) -> Tensor:
    """(n, segments) matrix with 1 where token t lies in segment [start, stop), in like's dtype and device."""
    t = torch.arange(bounds[-1][1], device=like.device)[:, None]  # (n, 1)
    starts = torch.tensor([start for start, _ in bounds], device=like.device)
    stops = torch.tensor([stop for _, stop in bounds], device=like.device)
    return ((t >= starts) & (t < stops)).to(like.dtype)


def relative_error(target: Tensor, read: Tensor) -> Tensor:
    """||target - read||^2 / ||target||^2 per token: (b, n, d) x2 -> (b, n), scale-free surprise."""
    return (target - read).pow(2).sum(-1) / target.pow(2).sum(-1).clamp_min(1e-12)


CompileMode = Literal["default", "reduce-overhead", "max-autotune"]


class SlotRule(nn.Module, ABC):
    """What one memory kind defines, injected into `SlotMemory`: how its `slots` slots are read, which write
    candidates a span proposes, and how a boundary commits them. Holds the kind's own weights, if any."""

    slots: int

    @abstractmethod
    def read(self, q: Tensor, K: Tensor, V: Tensor, s: Tensor) -> Tensor:
        """q (b, n, d) against the slots K, V (b, m, d), s (b, m) -> (b, n, d)."""

    @abstractmethod
    def init_candidates(self, batch: int, device, dtype) -> StateBase:
        """Empty write candidates of a fresh span."""

    @abstractmethod
    def accumulate(self, cand: StateBase, x: Tensor, k: Tensor, v: Tensor, offset: int) -> StateBase:
        """Feed the tokens x, k, v (b, n, d) of the open span (starting at span position offset)."""

    def segment_candidates(self, cand: StateBase, x: Tensor, k: Tensor, v: Tensor, bounds: list[tuple[int, int]],
                           offset: int) -> list[StateBase]:
        """The candidates after each segment [start, stop) of `bounds`: the first segment continues `cand`
        (its span began `offset` tokens earlier), every later one starts a fresh span.

        This reference feeds the segments one by one through `accumulate`; a rule may compute them all
        at once (it must agree with this).
        """
        out = []
        for i, (start, stop) in enumerate(bounds):
            first = cand if i == 0 else self.init_candidates(x.shape[0], x.device, x.dtype)
            out.append(self.accumulate(first, x[:, start:stop], k[:, start:stop], v[:, start:stop],
                                       offset if i == 0 else 0))
        return out

    @abstractmethod
    def commit(self, K: Tensor, V: Tensor, s: Tensor, cand: StateBase,
               mod: Modulation) -> tuple[Tensor, Tensor, Tensor]:
        """Write the span's candidates at a boundary; returns the new K, V, s."""

    def aux_loss(self, x: Tensor) -> Optional[Tensor]:
        """The rule's own training loss () over the tokens x (b, n, d) of one call, or None (the default)."""
        return None


class SlotMemory(nn.Module):
    """A slot memory: projections, the period loop, the span summary and the controller; the kind's `rule`
    is injected. Mixed before a plugin kind (`class LowRankPM(SlotMemory, ProceduralMemory)`), it is that
    kind's `forward(x, state) -> (read-out, state)`.

    Args:
        d_model: host width d.
        rule: factory of the memory kind's read / candidates / commit, called with d_model.
        controller: factory of the neuromodulator that decides each commit, called with d_model.
        period: plasticity period P in tokens.
        conv: kernel in tokens of a short causal depthwise convolution over the projected q, k, v; 1 = none.
        enabled: False switches reads and writes off together: the read-out is zero and the state passes
            through unchanged, which is the slow-weight model alone (`memories_off` switches it for a block).
        compile_mode: torch.compile mode for whole plasticity periods, or None for eager
            (`compile_plasticity` sets it for every memory of a model).
        induction: share of the query/key channels that form a fixed induction head (`ember.ops.induction`):
            there the query of token t and the key of token s are the same projection of t's last conv - 1
            tokens and of the conv - 1 tokens before s, so a query finds the item written after the same
            context however training moves the projection; 0 = none (every channel learned freely).
    """

    def __init__(self, d_model: int, rule: Callable[[int], SlotRule], controller: Callable[[int], Neuromodulator],
                 period: int, conv: int = 1, enabled: bool = True, compile_mode: Optional[CompileMode] = None,
                 induction: float = 0.0):
        super().__init__()
        if period < 1:
            raise EmberConfigError(f"period={period} must be >= 1")
        if conv < 1:
            raise EmberConfigError(f"conv={conv} is a kernel size in tokens: use 1 (no convolution) or more")
        self.d_model, self.period, self.conv = d_model, period, conv
        # built in this order (controller, projections, rule) so that a seed draws the weights it always drew
        self.controller = controller(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        # short causal depthwise convolution over the projected q, k, v: a key can name the token before
        # its value (the pair an associative recall needs) without a layer learning to copy it first
        self.qkv_conv = nn.Conv1d(3 * d_model, 3 * d_model, conv, groups=3 * d_model, bias=False) if conv > 1 else None
        self.out = nn.Linear(d_model, d_model, bias=False)
        nn.init.zeros_(self.out.weight)  # an empty memory starts as an exact no-op
        self.rule = rule(d_model)
        self.slots = self.rule.slots
        self.enabled = enabled
        self.compile_periods(compile_mode)
        self.induction = InductionHead(d_model, conv, induction, self.qkv_conv) if induction else None

    # ---- switches -------------------------------------------------------------------------
    def switch(self, enabled: bool) -> bool:
        """Turn reads and writes on or off; returns the previous setting."""
        before, self.enabled = self.enabled, enabled
        return before

    def compile_periods(self, mode: Optional[CompileMode]):
        """Run whole periods through `period_step` compiled in torch.compile `mode`, or eager with None."""
        self.compile_mode = mode
        self._compiled_step = None if mode is None else _compiled_step(type(self), mode)

    # ---- the loop -------------------------------------------------------------------------
    @property
    def modulation_dim(self) -> int:
        """Size k of the external modulation the controller reads (0: none)."""
        return getattr(self.controller, "modulation_dim", 0)

    def init_state(self, batch: int, device, dtype) -> SlotMemoryState:
        z = lambda *shape: torch.zeros(*shape, device=device, dtype=dtype)  # noqa: E731
        b, m, d = batch, self.slots, self.d_model
        return SlotMemoryState(z(b, m, d), z(b, m, d), z(b, m), self.rule.init_candidates(b, device, dtype), z(b, d),
                               z(b), torch.zeros((), dtype=torch.long, device=device), z(b), z(()),
                               z(b, self.conv - 1, 3 * d), z(b, self.modulation_dim))

    def modulate(self, state: SlotMemoryState | None, modulation: Tensor) -> SlotMemoryState:
        """The state (a fresh one for None) with the stream's external signals set to `modulation` (b, k):
        every later span summary carries them to the controller, until the next `modulate`. A controller that
        reads none (modulation_dim 0) keeps its (b, 0) signals; any other k must be the controller's."""
        b, k = modulation.shape
        st = state if state is not None else self.init_state(b, modulation.device, modulation.dtype)
        if self.modulation_dim == 0:
            return st
        if k != self.modulation_dim:
            raise EmberConfigError(f"the sensory slot gives {k} modulation signals but this memory's controller "
                                   f"reads modulation_dim={self.modulation_dim}: set the neuromodulator's "
                                   f"modulation_dim to {k} (or 0 to read none)")
        return dataclasses.replace(st, modulation=modulation.to(st.K.dtype))

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
        if self.induction is not None:
            mixed = self.induction(full, mixed)
        return mixed, full[:, full.shape[1] - (self.conv - 1):]

    def _span_inputs(self, st: SlotMemoryState, x: Tensor, k: Tensor, v: Tensor, bounds: list[tuple[int, int]],
                     tokens: int) -> tuple[list[StateBase], tuple[Tensor, ...]]:
        """The slot-independent work of every segment at once: its write candidates and its summed input."""
        if len(bounds) == 1:  # decoding and short chunks: the reference directly, fewer small ops
            return [self.rule.accumulate(st.cand, x, k, v, tokens)], (x.sum(1),)
        cands = self.rule.segment_candidates(st.cand, x, k, v, bounds, tokens)
        return cands, torch.einsum("bnd,ns->bsd", x, segment_onehot(bounds, x)).unbind(1)  # (b, d) per segment

    @torch.compiler.disable
    def _plasticity_loop(self, st: SlotMemoryState, fresh: bool, recent: Tensor, x: Tensor, q: Tensor, k: Tensor,
                         v: Tensor) -> tuple[Tensor, SlotMemoryState]:
        """Reads (b, n, d) before the output projection, and the new state (with `recent` from `mix_recent`).

        Always eager: torch.compile would unroll the loop, one copy per segment, and compile time grows
        with the segments (16 segment steps of the quickstart took minutes on a CPU; a 16384-token chunk
        has 256 per memory). Whole periods may run compiled (`compile_periods`).
        """
        K, V, s, pooled, surprise = st.K, st.V, st.s, st.pooled, st.surprise
        # the clock decides the segment bounds (Python ints); a fresh state needs no read of it (no device sync)
        tokens, reads, gates, aux = 0 if fresh else int(st.tokens), [], [], x.new_zeros(())
        bounds = self.segments(x.shape[1], tokens)
        cands, x_sums = self._span_inputs(st, x, k, v, bounds, tokens)
        sizes = [stop - start for start, stop in bounds]
        # one split, not a slice per segment: a slice's backward zero-fills a full-length gradient, so
        # per-segment slices would cost O(n x segments); split's backward is one concatenation
        q_seg, v_seg = q.split(sizes, dim=1), v.split(sizes, dim=1)
        for i, size in enumerate(sizes):
            # a whole period may run compiled (a fresh state's first period, whose slots need no gradient
            # yet, runs eager: one graph fewer)
            whole = tokens == 0 and size == self.period and (K.requires_grad or not torch.is_grad_enabled())
            step = self._compiled_step if whole and self._compiled_step is not None else period_step
            tokens += size
            read, K, V, s, pooled, surprise, g, step_aux = step(self, K, V, s, cands[i], q_seg[i], v_seg[i],
                                                                x_sums[i], pooled, surprise, st.modulation, tokens,
                                                                tokens == self.period)
            reads.append(read)
            if g is not None:
                gates.append(g)
                aux, tokens = aux + step_aux, 0
        rule_aux = self.rule.aux_loss(x)
        aux = aux if rule_aux is None else aux + rule_aux
        cand = cands[-1] if tokens else self.rule.init_candidates(x.shape[0], x.device, x.dtype)
        rate = torch.stack(gates, 1).mean(1) if gates else st.commit_rate
        new = SlotMemoryState(K, V, s, cand, pooled, surprise, torch.tensor(tokens, device=x.device), rate, aux,
                              recent, st.modulation)
        return torch.cat(reads, dim=1), new

    def boundary(self, K: Tensor, V: Tensor, s: Tensor, cand: StateBase, pooled: Tensor, surprise: Tensor,
                 modulation: Tensor, tokens: int) -> tuple[Tensor, Tensor, Tensor, Modulation]:
        """A plasticity boundary: the controller reads the span's mean input, mean surprise, the occupancy and the
        stream's modulation (b, k), and the rule commits the candidates. pooled (b, d), surprise (b,) are sums over
        the span's `tokens`."""
        mod = self.controller(SpanSummary(pooled / tokens, surprise / tokens, s.mean(-1),
                                          modulation if modulation.shape[-1] else None))
        K, V, s = self.rule.commit(K, V, s, cand, mod)
        return K, V, s, mod

    def flush(self, state: SlotMemoryState) -> SlotMemoryState:
        """Session end: commit the open span now (a boundary before the period is full)."""
        tokens = int(state.tokens)
        if tokens == 0 or not self.enabled:
            return state
        K, V, s, mod = self.boundary(state.K, state.V, state.s, state.cand, state.pooled, state.surprise,
                                     state.modulation, tokens)
        z = torch.zeros_like
        b = state.s.shape[0]
        return SlotMemoryState(K, V, s, self.rule.init_candidates(b, K.device, K.dtype), z(state.pooled),
                               z(state.surprise), z(state.tokens), mod.g, z(state.aux_loss), state.recent,
                               state.modulation)


def period_step(memory: SlotMemory, K: Tensor, V: Tensor, s: Tensor, cand: StateBase, q: Tensor, v: Tensor,
                x_sum: Tensor, pooled: Tensor, surprise: Tensor, modulation: Tensor, tokens: int, commit: bool):
    """One segment of a plasticity period, whole or partial: read its queries q (b, t, d) against the slots
    (fixed within the period), add its surprise (against its values v) and its summed input x_sum (b, d) to
    the open span's sums pooled (b, d) and surprise (b,), and, when it closes the period (`commit`; the span
    then holds `tokens` tokens), let the controller read the span (and the stream's modulation (b, k)) and commit
    the candidates.

    In one function so that `compile_plasticity` can compile a whole period into a few dozen kernels instead
    of some 400 small ops (forward and backward). Returns the reads (b, t, d), the new K, V, s, pooled and
    surprise (zero after a commit), the gate g (b,) and the controller's loss () (None and 0 without a commit).
    """
    read = memory.rule.read(q, K, V, s)
    surprise = surprise + relative_error(v, read).sum(1)
    pooled = pooled + x_sum
    if not commit:
        return read, K, V, s, pooled, surprise, None, x_sum.new_zeros(())
    K, V, s, mod = memory.boundary(K, V, s, cand, pooled, surprise, modulation, tokens)
    aux = mod.aux_loss if mod.aux_loss is not None else x_sum.new_zeros(())
    return read, K, V, s, torch.zeros_like(pooled), torch.zeros_like(surprise), mod.g, aux


def slot_memories(model: nn.Module) -> list[SlotMemory]:
    """Every slot memory (PM, EM) among the modules of `model`."""
    return [m for m in model.modules() if isinstance(m, SlotMemory)]


def compile_plasticity(model: nn.Module, enable: bool = True, mode: CompileMode | None = None) -> int:
    """torch.compile the whole-period step of every slot memory of `model` (or go back to eager with
    enable=False); returns how many memories it set. `mode` is torch.compile's (None: "default";
    "reduce-overhead" for CUDA graphs on a GPU).

    The plasticity loop is sequential over periods and always eager (it would unroll when compiled
    as a whole), so each period costs 330 (PM) to 410 (EM) small ops forward and backward, 210-230 of
    them kernels; on a GPU, launches, 256 periods per memory at 16384 tokens (P=64). Compiled, a whole
    period is one graph per memory kind of 24 (PM) or 39 (EM) kernels (BENCHMARKS 5); partial periods
    (a chunk that starts or ends mid-period, decoding) stay eager. Compiling takes tens of seconds
    once, so it is off by default: `ember bench` turns it on with --compile (the default on CUDA),
    `ember fit` with model.compile_periods.
    """
    memories = slot_memories(model)
    for memory in memories:
        memory.compile_periods((mode or "default") if enable else None)
    return len(memories)


@functools.cache
def _compiled_step(kind: type, mode: CompileMode) -> Callable:
    """`period_step` compiled for one memory kind, under its own code object: dynamo caches graphs (and
    counts recompiles, 8 at most) per code object, and each kind needs its own for training and evaluation.
    Cached, so all instances of a kind share one."""
    code = period_step.__code__.replace(co_name=f"period_step_{kind.__name__}")
    return torch.compile(types.FunctionType(code, period_step.__globals__, code.co_name), mode=mode)


@contextmanager
def memories_off(model: nn.Module) -> Iterator[int]:
    """Inside the block every slot memory of `model` neither reads nor writes; yields how many there are."""
    memories = slot_memories(model)
    before = [memory.switch(False) for memory in memories]  # restored as they were, so the blocks can nest
    try:
        yield len(memories)
    finally:
        for memory, enabled in zip(memories, before):
            memory.switch(enabled)
