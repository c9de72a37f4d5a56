from functools import partial

import pytest
import torch

from ember.ops.scan import scan_chunked, scan_naive, scan_parallel

FAST = {"parallel": scan_parallel, "chunked": scan_chunked, "chunked8": partial(scan_chunked, chunk=8)}


def _inputs(b, n, d, dtype=torch.float64, with_h0=True):
    a = torch.rand(b, n, d, dtype=dtype).requires_grad_()
    x = torch.randn(b, n, d, dtype=dtype).requires_grad_()
    h0 = torch.randn(b, d, dtype=dtype).requires_grad_() if with_h0 else None
    return a, x, h0


@pytest.mark.parametrize("scan", sorted(FAST))
@pytest.mark.parametrize("n", [1, 2, 7, 63, 64, 130])
@pytest.mark.parametrize("with_h0", [True, False])
def test_fast_scans_match_naive_outputs_state_and_gradients(scan, n, with_h0):
    """chunked8 covers one chunk, ragged ends (7, 63, 130) and exact multiples (64) with many chunks."""
    a, x, h0 = _inputs(3, n, 5, with_h0=with_h0)
    h_ref, last_ref = scan_naive(a, x, h0)
    h, last = FAST[scan](a, x, h0)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, last_ref, rtol=1e-10, atol=1e-10)

    weights = torch.randn_like(h_ref)
    leaves = [t for t in (a, x, h0) if t is not None]
    grads_ref = torch.autograd.grad((h_ref * weights).sum() + last_ref.sum(), leaves)
    grads = torch.autograd.grad((h * weights).sum() + last.sum(), leaves, materialize_grads=True)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)


def test_hand_computed_two_steps():
    a = torch.tensor([[[0.5], [0.25]]])
    b = torch.tensor([[[1.0], [2.0]]])
    h0 = torch.tensor([[4.0]])
    # h1 = 0.5*4 + 1 = 3; h2 = 0.25*3 + 2 = 2.75
    for fn in (scan_naive, *FAST.values()):
        h, last = fn(a, b, h0)
        assert h.flatten().tolist() == [3.0, 2.75]
        assert last.item() == 2.75


@pytest.mark.parametrize("scan", sorted(FAST))
def test_fast_scans_are_stable_for_long_sequences_with_tiny_gates(scan):
    """h_1 = 1, then h_t = 1e-6 h_{t-1} + 1 = 1 + 1e-6 (+ 1e-12): float32 holds the 1e-6 to about 6e-8, so the
    check allows 2e-7 (assert_close's float32 default, 1e-5, would pass h = 1 too)."""
    a = torch.full((1, 4096, 2), 1e-6)
    b = torch.ones(1, 4096, 2)
    h, _ = FAST[scan](a, b)
    want = torch.full_like(h, 1.0 + 1e-6)
    want[:, 0] = 1.0
    torch.testing.assert_close(h, want, rtol=0, atol=2e-7)


@pytest.mark.parametrize("scan", sorted(FAST))
def test_split_stream_with_carried_state_equals_all_at_once(scan):
    a, x, h0 = _inputs(2, 63, 4)
    h_all, last_all = FAST[scan](a, x, h0)
    h1, s = FAST[scan](a[:, :20], x[:, :20], h0)
    h2, last = FAST[scan](a[:, 20:], x[:, 20:], s)
    torch.testing.assert_close(torch.cat([h1, h2], 1), h_all)
    torch.testing.assert_close(last, last_all)


def test_chunked_float32_long_stream_matches_naive():
    """At n = 1000 (16 chunks of 64, ragged end) float32 rounding stays at the parallel scan's level."""
    a = torch.rand(2, 1000, 8) * 0.2 + 0.8
    x = torch.randn(2, 1000, 8)
    h_ref, last_ref = scan_naive(a.double(), x.double())
    for fn in (scan_parallel, scan_chunked):
        h, last = fn(a, x)
        torch.testing.assert_close(h.double(), h_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(last.double(), last_ref, rtol=1e-5, atol=1e-5)
