"""EpisodicStore: hand-computed read and write target, invariants, recurrence equivalence."""

import math

import pytest
import torch

from ember.base import Modulation
from ember.errors import EmberConfigError
from ember.ops.plasticity import em_read, em_write, merge_or_weakest, unit
from ember.plugins.backbone.nml import NMLBackbone
from ember.plugins.memory.episodic import EpisodicStore, SalientCandidates, top_salient
from ember.plugins.memory.procedural import LowRankPM
from ember.plugins.neuromod.learned import LearnedNeuromodulator

t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731


def test_read_by_hand_takes_the_strongest_similar_item():
    K = t([1.0, 0.0], [0.0, 1.0], [0.6, 0.8])[None]  # (1, 3, 2), unit keys
    V = t([10.0, 0.0], [0.0, 10.0], [5.0, 5.0])[None]
    s = t(0.2, 1.0, 1.0)[None]
    q = t([1.0, 0.0])[None]  # (1, 1, 2)
    # s * cos = [0.2, 0.0, 0.6]: top-1 is item 2; weight s e^l / (1 + s e^l) with l = q.K_2 / sqrt(2) = 0.6 / sqrt(2)
    a2 = 1.0 * math.exp(0.6 / math.sqrt(2))
    torch.testing.assert_close(em_read(q, K, V, s, top_k=1)[0, 0], a2 / (1 + a2) * V[0, 2])
    # top-2 = items 2 and 0 (l_0 = 1 / sqrt(2), s_0 = 0.2), beside the null item of weight 1
    a0 = 0.2 * math.exp(1.0 / math.sqrt(2))
    torch.testing.assert_close(em_read(q, K, V, s, top_k=2)[0, 0], (a2 * V[0, 2] + a0 * V[0, 0]) / (1 + a2 + a0))
    # an empty memory reads exactly zero
    assert torch.equal(em_read(q, K, V, torch.zeros_like(s), top_k=2), torch.zeros(1, 1, 2, dtype=torch.float64))


def em_read_loop(q, K, V, s, top_k):
    """em_read's equation one token at a time (the reference for the dense fast path)."""
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        for n in range(q.shape[1]):
            score = s[b] * torch.nn.functional.cosine_similarity(q[b, n][None], K[b], dim=-1)
            num, den = torch.zeros_like(V[b, 0]), 1.0
            for j in score.topk(top_k).indices.tolist():
                if s[b, j] > 0:
                    a = s[b, j] * torch.exp(q[b, n] @ K[b, j] / math.sqrt(q.shape[-1]))
                    num, den = num + a * V[b, j], den + a
            out[b, n] = num / den
    return out


def test_read_matches_the_per_token_reference_with_empty_items_and_gradients():
    torch.manual_seed(0)
    b, n, m, d = 2, 5, 7, 4
    q, V = torch.randn(b, n, d, dtype=torch.float64), torch.randn(b, m, d, dtype=torch.float64)
    K = unit(torch.randn(b, m, d, dtype=torch.float64))
    s = torch.rand(b, m, dtype=torch.float64) * (torch.rand(b, m) > 0.3)  # some items empty
    for top_k in (1, 3, m):
        torch.testing.assert_close(em_read(q, K, V, s, top_k), em_read_loop(q, K, V, s, top_k))
    leaves = [t.clone().requires_grad_() for t in (q, K, V, s)]
    grads = torch.autograd.grad(em_read(*leaves, 3).sum(), leaves)
    leaves2 = [t.clone().requires_grad_() for t in (q, K, V, s)]
    grads2 = torch.autograd.grad(em_read_loop(*leaves2, 3).sum(), leaves2)
    for g1, g2 in zip(grads, grads2):
        torch.testing.assert_close(g1, g2)


def test_write_merges_into_a_similar_item_else_overwrites_the_weakest():
    K = t([1.0, 0.0], [0.0, 1.0], [0.0, 0.0])[None]
    s = t(0.9, 0.5, 0.0)[None]
    similar, novel = t([0.99, 0.1]), t([-1.0, 0.0])
    w, merged = merge_or_weakest(K, s, similar[:, None], 0.9)
    assert w[0, 0].tolist() == [1.0, 0.0, 0.0] and merged.tolist() == [[True]]  # merge into item 0
    w, merged = merge_or_weakest(K, s, novel[:, None], 0.9)
    assert w[0, 0].tolist() == [0.0, 0.0, 1.0] and merged.tolist() == [[False]]  # the empty (weakest) item
    full = t(0.9, 0.5, 0.7)[None]
    assert merge_or_weakest(K, full, novel[:, None], 0.9)[0][0, 0].tolist() == [0.0, 1.0, 0.0]  # weakest live item


def test_write_by_hand_overwrites_outright_and_merges_by_the_gate():
    K = t([1.0, 0.0], [0.0, 1.0], [0.0, 0.0])[None]
    V = t([1.0, 1.0], [2.0, 2.0], [3.0, 3.0])[None]
    s = t(0.9, 0.5, 0.0)[None]
    k = t([-1.0, 0.0], [0.99, 0.1])[None]  # candidate 0 is novel (-> weakest, item 2), 1 similar to item 0
    v = t([10.0, 0.0], [0.0, 10.0])[None]
    g, eta, lam = t(0.4, 0.5)[None], t(0.5), t(0.8)
    w, merged = merge_or_weakest(K, s, k, 0.9)
    assert merged.tolist() == [[False, True]]
    K2, V2, s2 = em_write(K, V, s, k, v, w, merged, g, eta, lam)
    torch.testing.assert_close(K2[0], torch.stack([t(0.995, 0.05) / t(0.995, 0.05).norm(), t(0.0, 1.0), t(-1.0, 0.0)]))
    torch.testing.assert_close(V2[0], t([0.5, 5.5], [2.0, 2.0], [10.0, 0.0]))  # merge: V + g (v - V); overwrite: v
    torch.testing.assert_close(s2[0], t(0.8 * 0.9 + 0.5 * 0.5, 0.8 * 0.5, 0.4 * 0.5))  # replaced item: g eta only


def test_closed_gate_writes_nothing():
    torch.manual_seed(1)
    K, V, s = torch.randn(2, 4, 3), torch.randn(2, 4, 3), torch.rand(2, 4)
    k, v = torch.randn(2, 2, 3), torch.randn(2, 2, 3)
    w, merged = merge_or_weakest(K, s, k, 0.5)
    K2, V2, s2 = em_write(K, V, s, k, v, w, merged, torch.zeros(2, 2), torch.rand(2), torch.ones(2))
    torch.testing.assert_close(K2, unit(K))
    torch.testing.assert_close(V2, V)
    torch.testing.assert_close(s2, s)


def test_capacity_and_strength_bounds_over_a_long_stream():
    torch.manual_seed(0)
    b, m, d = 3, 5, 4
    K, V, s = torch.zeros(b, m, d), torch.zeros(b, m, d), torch.zeros(b, m)
    for _ in range(100):
        k, v = torch.randn(b, 2, d), torch.randn(b, 2, d)
        w, merged = merge_or_weakest(K, s, k, 0.8)
        K, V, s = em_write(K, V, s, k, v, w, merged, torch.rand(b, 2), torch.rand(b) * 2, torch.rand(b))
        assert K.shape == (b, m, d) and (s >= 0).all() and (s <= 1).all()
        assert torch.allclose(w.sum(-1), torch.ones(b, 2))


def _memory_backbone():
    return NMLBackbone(d_model=16, blocks=2, layers_per_block=1, heads=2, window=8,
                       pm=lambda d: LowRankPM(d, neuromodulator=LearnedNeuromodulator, slots=4, period=8, conv=2),
                       em=lambda d: EpisodicStore(d, neuromodulator=LearnedNeuromodulator, items=6, top_k=2,
                                                  period=8, conv=4))


def test_all_at_once_equals_chunked_equals_token_by_token_with_writes():
    model = _memory_backbone().double().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (EpisodicStore, LowRankPM)):
                module.out.weight.normal_(std=0.2)
                module.controller.net[-1].bias[0] = 3.0  # commit often so writes happen
    tokens = torch.randint(0, 256, (2, 63))
    whole, final = model(tokens)
    outs, state, pos = [], None, 0
    for size in (9, 30, 24):
        out, state = model(tokens[:, pos : pos + size], state)
        outs.append(out)
        pos += size
    torch.testing.assert_close(torch.cat(outs, 1), whole)
    steps, state = [], None
    for i in range(63):
        out, state = model(tokens[:, i : i + 1], state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, 1), whole)
    assert len(final.collect("commit_rate")) == 4  # 2 PM (one per layer) + 2 EM (one per block)
    assert max(float(s.max()) for s in final.collect("s")) > 0  # memories were written


def test_state_size_is_independent_of_stream_length():
    model = _memory_backbone()
    sizes = [model(torch.randint(0, 256, (1, n)))[1].nbytes() for n in (16, 200)]
    assert sizes[0] == sizes[1]


def test_candidates_are_the_most_salient_tokens_whole_or_in_pieces():
    b, c, d = 1, 2, 3
    empty = SalientCandidates(torch.zeros(b, c, d), torch.zeros(b, c, d), torch.zeros(b, c), torch.zeros(b, c))
    k = torch.arange(5.0)[None, :, None].expand(b, 5, d)  # token t has key (t, t, t)
    a = t(0.1, 0.9, 0.3, 0.9, 0.5).float()[None]  # tokens 1 and 3 tie at the top
    whole = top_salient(empty, k, k, a, offset=0)
    assert sorted(whole.pos[0].tolist()) == [1.0, 3.0] and whole.k[0, :, 0].tolist() == [1.0, 3.0]
    first = top_salient(empty, k[:, :2], k[:, :2], a[:, :2], offset=0)
    pieces = top_salient(first, k[:, 2:], k[:, 2:], a[:, 2:], offset=2)
    for name in ("k", "a", "pos"):
        torch.testing.assert_close(getattr(pieces, name), getattr(whole, name))
    ties = top_salient(empty, k, k, torch.full((1, 5), 0.5), offset=0)
    assert ties.pos[0].tolist() == [0.0, 1.0]  # equal salience: the earliest tokens


def test_commit_writes_the_candidates_at_once_with_gate_times_salience():
    torch.manual_seed(0)
    mem = EpisodicStore(2, neuromodulator=LearnedNeuromodulator, items=3, top_k=2, period=4, writes=2,
                       merge_threshold=0.9)
    K, V, s = torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), torch.zeros(1, 3)
    cand = SalientCandidates(torch.tensor([[[0.0, 2.0], [3.0, 0.0]]]), torch.tensor([[[5.0, 5.0], [7.0, 7.0]]]),
                             torch.tensor([[1.0, 0.5]]), torch.tensor([[3.0, 1.0]]))  # second is earlier
    one = torch.ones(1)

    K, V, s = mem.rule.commit(K, V, s, cand, Modulation(one, one, one, one))
    # empty memory: candidate 1 (0, 2) with gate 1 overwrites the weakest item 0, candidate 2 (3, 0) with
    # gate 0.5 the next weakest, item 1: contents replaced outright, strengths g eta
    torch.testing.assert_close(K[0], torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(V[0], torch.tensor([[5.0, 5.0], [7.0, 7.0], [0.0, 0.0]]))
    torch.testing.assert_close(s[0], torch.tensor([1.0, 0.5, 0.0]))
    # a candidate like item 1 merges into it: K_1 = normalize(K_1 + 1 (k - K_1)), s_1 = 0.5 + 1
    cand = SalientCandidates(torch.tensor([[[2.0, 0.1], [0.0, -1.0]]]), torch.tensor([[[1.0, 1.0], [2.0, 2.0]]]),
                             torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    K2, V2, s2 = mem.rule.commit(K, V, s, cand, Modulation(one, one, one, one))
    torch.testing.assert_close(K2[0, 1], torch.nn.functional.normalize(torch.tensor([2.0, 0.1]), dim=0))
    torch.testing.assert_close(V2[0, 1], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(s2[0], torch.tensor([1.0, 1.0, 0.0]))  # the 0-gate candidate wrote nothing


def test_session_end_flush_commits_the_open_span():
    model = _memory_backbone().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (EpisodicStore, LowRankPM)):
                module.controller.net[-1].bias[0] = 3.0
        _, state = model(torch.randint(0, 256, (2, 5)))  # 5 < period 8: nothing committed yet
        assert all(float(s.abs().sum()) == 0 for s in state.collect("s"))
        flushed = model.end_session(state)
    assert all(float(s.sum()) > 0 for s in flushed.collect("s"))
    assert all(int(t) == 0 for t in flushed.collect("tokens"))
    assert model.end_session(flushed).tensors().keys() == flushed.tensors().keys()


@pytest.mark.parametrize("kwargs", [dict(top_k=7), dict(merge_threshold=2.0), dict(period=0),
                                    dict(writes=0), dict(writes=7)])
def test_bad_settings_name_the_fix(kwargs):
    with pytest.raises(EmberConfigError):
        EpisodicStore(16, neuromodulator=LearnedNeuromodulator, items=6, **kwargs)


def test_gradients_stay_finite_through_empty_slots():
    """Untouched slots are all-zero rows: normalising them must not back-propagate NaN."""
    torch.manual_seed(0)
    model = _memory_backbone()
    logits, _ = model(torch.randint(0, 256, (2, 40)))
    logits.float().logsumexp(-1).mean().backward()
    bad = [name for name, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
    assert not bad
