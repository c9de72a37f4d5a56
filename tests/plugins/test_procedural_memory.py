"""LowRankPM and the neuromodulators: hand-computed steps, invariants, recurrence equivalence."""

import math

import pytest
import torch

from ember.base import SpanSummary
from ember.ops.plasticity import eligibility, pm_commit, pm_read, slot_weights
from ember.ops.scan import scan_naive
from ember.plugins.backbone.nml import NMLBackbone
from ember.plugins.memory.procedural import LowRankPM
from ember.plugins.neuromod.heuristic import HeuristicNeuromodulator
from ember.plugins.neuromod.learned import LearnedNeuromodulator

t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731


def test_commit_by_hand_2x2():
    K = t([1.0, 0.0], [0.0, 1.0])[None]  # (1, 2, 2)
    V = t([2.0, 0.0], [0.0, 2.0])[None]
    s = t(0.5, 1.0)[None]
    k_e, v_e = t(0.0, 1.0)[None], t(4.0, 4.0)[None]
    w = t(1.0, 0.0)[None]  # all of the write goes to slot 0
    K2, V2, s2 = pm_commit(K, V, s, k_e, v_e, w, g=t(0.5), eta=t(0.4), lam=t(0.9))
    # K0 + 0.5 * ([0,1] - [1,0]) = [0.5, 0.5] -> normalised [1/sqrt2, 1/sqrt2]; slot 1 untouched
    torch.testing.assert_close(K2[0], t([1 / math.sqrt(2), 1 / math.sqrt(2)], [0.0, 1.0]))
    # V0 + 0.5 * ([4,4] - [2,0]) = [3, 2]
    torch.testing.assert_close(V2[0], t([3.0, 2.0], [0.0, 2.0]))
    # s = clamp(0.9 * s + 0.5 * 0.4 * w) = [0.45 + 0.2, 0.9]
    torch.testing.assert_close(s2[0], t(0.65, 0.9))


def test_slot_weights_by_hand():
    K = t([1.0, 0.0], [0.0, 1.0], [-1.0, 0.0])[None]
    s = t(1.0, 0.0, 1.0)[None]
    k_e = t(1.0, 0.0)[None]
    # scores (cos - beta (1 - s)) / tau with beta 0.5, tau 1: [1, -0.5, -1]; top-2 -> slots 0 and 1
    w = slot_weights(K, s, k_e, tau=t(1.0), beta=0.5, top_k=2)
    e = math.exp(-1.5)
    torch.testing.assert_close(w[0], t(1 / (1 + e), e / (1 + e), 0.0))


def test_read_by_hand_single_slot():
    q, K, V, s = t([1.0, 0.0])[None], t([0.0, 1.0])[None], t([3.0, -1.0])[None], t(0.5)[None]
    torch.testing.assert_close(pm_read(q, K, V, s)[0, 0], t(1.5, -0.5))  # one slot: softmax = 1


def test_eligibility_trace_by_hand():
    x = t([1.0], [3.0])[None]  # (1, 2, 1)
    # e1 = 0.5 * 2 + 0.5 * 1 = 1.5; e2 = 0.5 * 1.5 + 0.5 * 3 = 2.25
    torch.testing.assert_close(eligibility(x, t([2.0]), 0.5), t([2.25]))


def test_eligibility_closed_form_matches_the_step_by_step_scan():
    torch.manual_seed(0)
    x, e0 = torch.randn(3, 37, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    for rho in (0.0, 0.5, 0.9):
        _, reference = scan_naive(torch.full_like(x, rho), (1.0 - rho) * x, e0)
        torch.testing.assert_close(eligibility(x, e0, rho), reference)


def test_invariants_under_random_commits():
    torch.manual_seed(0)
    b, r, d = 4, 8, 6
    K, V, s = torch.randn(b, r, d), torch.randn(b, r, d), torch.rand(b, r)
    for _ in range(50):
        k_e, v_e = torch.randn(b, d), torch.randn(b, d)
        g, eta, lam, tau = torch.rand(b), torch.rand(b) * 3, torch.rand(b), torch.rand(b) + 0.05
        w = slot_weights(K, s, k_e, tau, beta=0.5, top_k=2)
        assert torch.allclose(w.sum(-1), torch.ones(b)) and ((w > 0).sum(-1) <= 2).all()
        K, V, s = pm_commit(K, V, s, k_e, v_e, w, g, eta, lam)
        assert (s >= 0).all() and (s <= 1).all() and K.shape == (b, r, d)


def test_no_write_when_the_gate_is_zero():
    K = torch.nn.functional.normalize(torch.randn(2, 4, 3), dim=-1)
    V, s = torch.randn(2, 4, 3), torch.rand(2, 4)
    w = slot_weights(K, s, torch.randn(2, 3), torch.ones(2), 0.5, 2)
    K2, V2, s2 = pm_commit(K, V, s, torch.randn(2, 3), torch.randn(2, 3), w, torch.zeros(2), torch.ones(2),
                           torch.full((2,), 0.9))
    torch.testing.assert_close(K2, K)
    torch.testing.assert_close(V2, V)
    torch.testing.assert_close(s2, 0.9 * s)  # strengths still decay at the boundary


def test_heuristic_commits_only_above_the_threshold():
    ctrl = HeuristicNeuromodulator(4, threshold=1.0)
    summary = SpanSummary(torch.zeros(3, 4), torch.tensor([0.5, 1.0, 1.5]), torch.zeros(3))
    assert ctrl(summary).g.tolist() == [0.0, 0.0, 1.0]


def _pm_backbone():
    return NMLBackbone(d_model=16, layers_per_block=2, heads=2, window=8,
                       pm=lambda d: LowRankPM(d, neuromodulator=LearnedNeuromodulator, slots=4, period=8))


def _randomise_outputs(model):
    with torch.no_grad():  # PM read-outs start at zero; make them matter for the test
        for module in model.modules():
            if isinstance(module, LowRankPM):
                module.out.weight.normal_(std=0.2)


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
    steps, state = [], None
    for i in range(63):
        out, state = model(tokens[:, i : i + 1], state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, 1), whole)
    for a, b in zip(state.collect("s"), state_whole.collect("s")):
        torch.testing.assert_close(a, b)


def test_main_loss_trains_the_controller_through_the_memory():
    model = _pm_backbone().double()
    _randomise_outputs(model)
    logits, _ = model(torch.randint(0, 256, (2, 40)))
    logits.square().mean().backward()  # no budget term here: only the path write -> read -> logits
    grads = [m.controller.net[0].weight.grad for m in model.modules() if isinstance(m, LowRankPM)]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


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


@pytest.mark.parametrize("kwargs", [dict(top_k=9), dict(period=0), dict(trace_decay=1.0)])
def test_bad_settings_name_the_fix(kwargs):
    from ember.errors import EmberConfigError

    with pytest.raises(EmberConfigError):
        LowRankPM(16, neuromodulator=LearnedNeuromodulator, **kwargs)
