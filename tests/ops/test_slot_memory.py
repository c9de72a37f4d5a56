"""The slot-memory loop: all-segments-at-once candidates held to the per-segment reference."""

import pytest
import torch
from torch import nn

from ember.base import Modulation
from ember.errors import EmberConfigError
from ember.ops.plasticity import em_read
from ember.ops.slot_memory import SlotRule, compile_plasticity
from ember.plugins.memory.episodic import EpisodicStore
from ember.plugins.memory.procedural import LowRankPM
from ember.plugins.neuromod.learned import LearnedNeuromodulator


def _memories(d: int, period: int):
    return [LowRankPM(d, LearnedNeuromodulator, slots=4, period=period, trace_decay=0.8).double(),
            EpisodicStore(d, LearnedNeuromodulator, items=6, period=period, writes=3).double()]


def _open_span(memory, b: int, d: int, offset: int):
    """Candidates of a span that already holds `offset` tokens (via the reference)."""
    cand = memory.rule.init_candidates(b, "cpu", torch.float64)
    if offset:
        x = torch.randn(b, offset, d, dtype=torch.float64)
        cand = memory.rule.accumulate(cand, x, torch.randn_like(x), torch.randn_like(x), 0)
    return cand


@pytest.mark.parametrize("n,offset", [(1, 0), (2, 5), (7, 0), (23, 0), (23, 3), (40, 6), (8, 0)])
def test_segment_candidates_match_the_per_segment_reference(n, offset):
    torch.manual_seed(n + offset)
    b, d, period = 2, 5, 8
    for memory in _memories(d, period):
        cand = _open_span(memory, b, d, offset)
        x = torch.randn(b, n, d, dtype=torch.float64, requires_grad=True)
        k, v = torch.randn_like(x, requires_grad=True), torch.randn_like(x, requires_grad=True)
        bounds = memory.segments(n, offset)
        assert bounds[0][1] == min(n, period - offset) and all(stop - start <= period for start, stop in bounds)
        fast = memory.rule.segment_candidates(cand, x, k, v, bounds, offset)
        slow = SlotRule.segment_candidates(memory.rule, cand, x, k, v, bounds, offset)
        assert len(fast) == len(slow) == len(bounds)
        for one, ref in zip(fast, slow):
            for name, value in vars(ref).items():
                torch.testing.assert_close(getattr(one, name), value, msg=f"{type(memory).__name__}.{name}")
        loss = lambda cands: sum(sum(t.pow(2).sum() for t in vars(c).values()) for c in cands)  # noqa: E731
        fast_grads = torch.autograd.grad(loss(fast), (x, k, v), allow_unused=True)
        slow_grads = torch.autograd.grad(loss(slow), (x, k, v), allow_unused=True)
        for g1, g2 in zip(fast_grads, slow_grads):
            assert (g1 is None) == (g2 is None)
            if g1 is not None:
                torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("memory", ["pm", "em"])
def test_short_convolution_by_hand_and_causal_across_chunks(memory):
    torch.manual_seed(0)
    d, conv = 2, 3
    kind = LowRankPM if memory == "pm" else EpisodicStore
    mem = kind(d, neuromodulator=LearnedNeuromodulator, period=4, conv=conv, **({"slots": 2} if memory == "pm"
                                                                               else {"items": 4, "writes": 2}))
    with torch.no_grad():
        mem.qkv_conv.weight.copy_(torch.tensor([0.5, -1.0, 2.0]).expand(3 * d, 1, conv))  # taps t-2, t-1, t
    qkv = torch.randn(1, 5, 3 * d)
    mixed, recent = mem.mix_recent(qkv, torch.zeros(1, conv - 1, 3 * d))
    # y_t = 2 x_t - x_{t-1} + 0.5 x_{t-2}, with zeros before a fresh stream
    padded = torch.cat([torch.zeros(1, 2, 3 * d), qkv], 1)
    expected = 2 * padded[:, 2:] - padded[:, 1:-1] + 0.5 * padded[:, :-2]
    torch.testing.assert_close(mixed, expected)
    torch.testing.assert_close(recent, qkv[:, -2:])
    first, carried = mem.mix_recent(qkv[:, :1], torch.zeros(1, conv - 1, 3 * d))  # a 1-token chunk keeps conv-1 rows
    second, _ = mem.mix_recent(qkv[:, 1:], carried)
    torch.testing.assert_close(torch.cat([first, second], 1), expected)


class ShownSpans(nn.Module):
    """A controller that writes at full gate, halves old strengths and keeps every span summary it is shown."""

    def __init__(self, d_model: int):
        super().__init__()
        self.seen = []

    def forward(self, summary):
        self.seen.append(summary)
        one = torch.ones_like(summary.surprise)
        return Modulation(one, one, 0.5 * one, one)


def test_the_controller_reads_the_spans_mean_input_relative_surprise_and_occupancy():
    """Summaries by hand from the state each period starts from: the mean of x over the span; the mean over its
    tokens of ||v - read||^2 / ||v||^2 with read = em_read(q, K, V, s) (1 while the memory is empty); mean s."""
    torch.manual_seed(0)
    d = 4
    memory = EpisodicStore(d, ShownSpans, items=4, top_k=2, period=4, writes=2, conv=1).double()
    x = torch.randn(2, 8, d, dtype=torch.float64)
    _, first = memory(x[:, :4])
    memory(x[:, 4:], first)
    q, _, v = memory.qkv(x[:, 4:]).chunk(3, dim=-1)
    read = em_read(q, first.K, first.V, first.s, top_k=2)
    surprise = ((v - read).square().sum(-1) / v.square().sum(-1)).mean(1)
    empty, written = memory.controller.seen
    torch.testing.assert_close(empty.pooled, x[:, :4].mean(1))
    torch.testing.assert_close(empty.surprise, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(written.pooled, x[:, 4:].mean(1))
    torch.testing.assert_close(written.surprise, surprise)
    torch.testing.assert_close(written.occupancy, first.s.mean(-1))
    assert (first.s > 0).any(-1).all() and (surprise - 1).abs().min() > 1e-3  # the read mattered


def test_short_convolution_needs_a_kernel_of_one_token_or_more():
    with pytest.raises(EmberConfigError, match="conv=0 is a kernel size"):
        EpisodicStore(4, neuromodulator=LearnedNeuromodulator, items=4, conv=0)


def _stream(memory, x: torch.Tensor):
    """x through `memory` in chunks of 8, 2 and 7 tokens (period 4): two whole periods | half of one | its
    other half, one whole period, one token. Returns the reads, the last state and the parameter gradients."""
    state, outs = None, []
    for chunk in x.split([8, 2, 7], dim=1):
        y, state = memory(chunk, state)
        outs.append(y)
    out = torch.cat(outs, 1)
    loss = out.square().sum() + state.K.sum() + state.s.sum() + state.aux_loss
    return out, state, torch.autograd.grad(loss, list(memory.parameters()), allow_unused=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pm", "em"])
def test_compiled_whole_periods_match_the_eager_loop(kind):
    """compile_plasticity's fast path: the same reads, states and gradients as the eager loop."""
    torch.manual_seed(0)
    memory = (LowRankPM(8, LearnedNeuromodulator, slots=4, period=4) if kind == "pm" else
              EpisodicStore(8, LearnedNeuromodulator, items=6, period=4, writes=2, conv=2))
    torch.nn.init.normal_(memory.out.weight, std=0.1)  # zero at init: the reads would not show
    x = torch.randn(2, 17, 8)
    eager_out, eager_state, eager_grads = _stream(memory, x)
    assert compile_plasticity(memory) == 1 and memory.compile_mode == "default"
    fused_out, fused_state, fused_grads = _stream(memory, x)
    compile_plasticity(memory, enable=False)
    assert memory.compile_mode is None
    torch.testing.assert_close(fused_out, eager_out)
    for field in ("K", "V", "s", "commit_rate", "recent"):
        torch.testing.assert_close(getattr(fused_state, field), getattr(eager_state, field), msg=field)
    for p, g1, g2 in zip(memory.parameters(), fused_grads, eager_grads):
        assert (g1 is None) == (g2 is None)
        if g1 is not None:
            torch.testing.assert_close(g1, g2, msg=f"gradient {tuple(p.shape)}")
