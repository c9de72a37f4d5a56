"""LowRankPM: recurrence equivalence with commits, the controller trained through the memory, state size."""

import math

import pytest
import torch

from ember.base import Modulation
from ember.plugins.backbone.nml import NMLBackbone
from ember.plugins.memory.procedural import LowRankPM, TraceCandidates, TraceRule
from ember.plugins.neuromod.learned import LearnedNeuromodulator
from helpers import token_by_token


def _pm_backbone():
    return NMLBackbone(d_model=16, layers_per_block=2, heads=2, window=8,
                       pm=lambda d: LowRankPM(d, neuromodulator=LearnedNeuromodulator, slots=4, period=8))


def _randomise_outputs(model):
    with torch.no_grad():  # PM read-outs start at zero; make them matter for the test
        for module in model.modules():
            if isinstance(module, LowRankPM):
                module.out.weight.normal_(std=0.2)


@pytest.mark.slow
def test_all_at_once_equals_chunked_equals_token_by_token_with_commits():
    model = _pm_backbone().double().eval()
    _randomise_outputs(model)
    tokens = torch.randint(0, 256, (2, 63))  # 7 boundaries and an open span
    whole, state_whole = model(tokens)
    outs, state = [], None
    for size in (5, 20, 1, 37):
        out, state = model(tokens[:, sum(o.shape[1] for o in outs) :][:, :size], state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), whole)
    torch.testing.assert_close(token_by_token(model, tokens), whole)
    for a, b in zip(state.collect("s"), state_whole.collect("s")):
        torch.testing.assert_close(a, b)


def test_commit_by_hand_the_key_trace_picks_the_slot_and_both_traces_are_written():
    """top-1 slot by cos(K_i, e_k): e_k = (0.8, 0.6) is nearer slot 0, e_v = (0, 5) nearer slot 1. With g 0.5,
    eta 0.4, lam 0.8: K_0 = normalize(K_0 + g (e_k - K_0)), V_0 = V_0 + g (e_v - V_0), s = lam s + g eta w."""
    rule = TraceRule(2, slots=2, top_k=1, beta=0.5, trace_decay=0.9)
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    K, V, s = t([1.0, 0.0], [0.0, 1.0])[None], torch.zeros(1, 2, 2, dtype=torch.float64), t(0.5, 0.5)[None]
    cand = TraceCandidates(t(0.8, 0.6)[None], t(0.0, 5.0)[None])
    K2, V2, s2 = rule.commit(K, V, s, cand, Modulation(t(0.5), t(0.4), t(0.8), t(1.0)))
    torch.testing.assert_close(K2[0], t([0.9 / math.sqrt(0.9), 0.3 / math.sqrt(0.9)], [0.0, 1.0]))
    torch.testing.assert_close(V2[0], t([0.0, 2.5], [0.0, 0.0]))
    torch.testing.assert_close(s2[0], t(0.8 * 0.5 + 0.5 * 0.4, 0.8 * 0.5))


def test_main_loss_trains_the_controller_through_the_memory():
    model = _pm_backbone().double()
    _randomise_outputs(model)
    logits, _ = model(torch.randint(0, 256, (2, 40)))
    logits.square().mean().backward()  # no budget term here: only the path write -> read -> logits
    grads = [m.controller.net[0].weight.grad for m in model.modules() if isinstance(m, LowRankPM)]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.slow
def test_state_size_is_independent_of_stream_length_and_reset_empties_one_stream():
    model = _pm_backbone()
    sizes = []
    for n in (16, 160):
        _, state = model(torch.randint(0, 256, (2, n)))
        sizes.append(state.nbytes())
    assert sizes[0] == sizes[1]
    cleared = state.reset(torch.tensor([True, False]))
    for s_new, s_old in zip(cleared.collect("s"), state.collect("s")):
        assert s_new[0].abs().sum() == 0 and torch.equal(s_new[1], s_old[1])


@pytest.mark.parametrize("kwargs, fix", [(dict(top_k=9), "between 1 and slots=8"), (dict(period=0), "period=0 must"),
                                         (dict(trace_decay=1.0), r"in \[0, 1\)")])
def test_bad_settings_name_the_fix(kwargs, fix):
    from ember.errors import EmberConfigError

    with pytest.raises(EmberConfigError, match=fix):
        LowRankPM(16, neuromodulator=LearnedNeuromodulator, **kwargs)
