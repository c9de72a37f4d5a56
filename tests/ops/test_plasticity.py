"""ember.ops.plasticity: the procedural (pm_*) and episodic (em_*) read and write rules by hand, their
invariants, and the dense episodic read held to a per-token reference."""

import math

import torch

from ember.ops.plasticity import (
    eligibility,
    em_read,
    em_write,
    merge_or_weakest,
    pm_commit,
    pm_read,
    slot_weights,
    unit,
)
from ember.ops.scan import scan_naive

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
    # tau 0.5 sharpens: scores [2, -1, -2]
    w = slot_weights(K, s, k_e, tau=t(0.5), beta=0.5, top_k=2)
    e = math.exp(-3.0)
    torch.testing.assert_close(w[0], t(1 / (1 + e), e / (1 + e), 0.0))


def test_read_by_hand_single_slot():
    q, K, V, s = t([1.0, 0.0])[None], t([0.0, 1.0])[None], t([3.0, -1.0])[None], t(0.5)[None]
    torch.testing.assert_close(pm_read(q, K, V, s)[0, 0], t(1.5, -0.5))  # one slot: softmax = 1


def test_read_by_hand_two_tokens_two_slots():
    q = t([1.0, 0.0], [0.0, 2.0])[None]  # (1, 2, 2): each token its own softmax over the slots
    K, V, s = t([1.0, 0.0], [0.0, 1.0])[None], t([1.0, 2.0], [3.0, -1.0])[None], t(1.0, 0.5)[None]
    # logits q.K / sqrt(2): token 0 [1/sqrt2, 0], token 1 [0, 2/sqrt2]; y = sum_i s_i softmax_i V_i
    a0 = 1 / (1 + math.exp(-1 / math.sqrt(2)))  # weight of slot 0 for token 0
    a1 = 1 / (1 + math.exp(2 / math.sqrt(2)))  # and for token 1
    want = torch.stack([a0 * V[0, 0] + (1 - a0) * 0.5 * V[0, 1], a1 * V[0, 0] + (1 - a1) * 0.5 * V[0, 1]])
    torch.testing.assert_close(pm_read(q, K, V, s)[0], want)


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
    # cosine logits l = tau cos(q, K): q scaled by 3 changes nothing, tau = 10 sharpens the match
    a2, a0 = math.exp(10 * 0.6), 0.2 * math.exp(10 * 1.0)
    torch.testing.assert_close(em_read(3 * q, K, V, s, top_k=2, scale=t(10.0))[0, 0],
                               (a2 * V[0, 2] + a0 * V[0, 0]) / (1 + a2 + a0))


def em_read_loop(q, K, V, s, top_k, scale=None):
    """em_read's equation one token at a time (the reference for the dense fast path)."""
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        for n in range(q.shape[1]):
            score = s[b] * torch.nn.functional.cosine_similarity(q[b, n][None], K[b], dim=-1)
            num, den = torch.zeros_like(V[b, 0]), 1.0
            for j in score.topk(top_k).indices.tolist():
                if s[b, j] > 0:
                    cos = q[b, n] @ K[b, j] / q[b, n].norm()
                    a = s[b, j] * torch.exp(q[b, n] @ K[b, j] / math.sqrt(q.shape[-1]) if scale is None
                                            else scale * cos)
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
        torch.testing.assert_close(em_read(q, K, V, s, top_k, t(7.0)), em_read_loop(q, K, V, s, top_k, t(7.0)))
    for scale in (None, t(7.0)):
        inputs = (q, K, V, s) if scale is None else (q, K, V, s, scale)
        leaves = [t.clone().requires_grad_() for t in inputs]
        grads = torch.autograd.grad(em_read(*leaves[:4], 3, *leaves[4:]).sum(), leaves)
        leaves2 = [t.clone().requires_grad_() for t in leaves]
        grads2 = torch.autograd.grad(em_read_loop(*leaves2[:4], 3, *leaves2[4:]).sum(), leaves2)
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
    dead = t(0.0, 0.5, 0.7)[None]  # item 0 decayed to nothing but keeps its key: no merge into it, an overwrite
    w, merged = merge_or_weakest(K, dead, similar[:, None], 0.9)
    assert w[0, 0].tolist() == [1.0, 0.0, 0.0] and merged.tolist() == [[False]]


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


def test_an_overwrite_replaces_a_live_items_strength_too():
    """The weakest item is live (s = 0.3): the overwrite gives it the new strength g eta alone, not that plus its
    decayed old strength; the items not written decay by lam."""
    K = t([1.0, 0.0], [0.0, 1.0], [0.6, 0.8])[None]
    V = t([1.0, 1.0], [2.0, 2.0], [3.0, 3.0])[None]
    s = t(0.9, 0.3, 0.6)[None]
    k, v = t(-1.0, 0.0)[None, None], t(5.0, -5.0)[None, None]  # novel: cosines -1, 0, -0.6
    w, merged = merge_or_weakest(K, s, k, 0.9)
    K2, V2, s2 = em_write(K, V, s, k, v, w, merged, t(0.5)[None], eta=t(0.4), lam=t(0.8))
    torch.testing.assert_close(s2[0], t(0.8 * 0.9, 0.5 * 0.4, 0.8 * 0.6))
    torch.testing.assert_close(K2[0, 1], t(-1.0, 0.0))
    torch.testing.assert_close(V2[0, 1], t(5.0, -5.0))


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
