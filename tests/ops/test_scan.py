import pytest
import torch

from ember.ops.scan import scan_naive, scan_parallel


def _inputs(b, n, d, dtype=torch.float64, with_h0=True):
    a = torch.rand(b, n, d, dtype=dtype).requires_grad_()
    x = torch.randn(b, n, d, dtype=dtype).requires_grad_()
    h0 = torch.randn(b, d, dtype=dtype).requires_grad_() if with_h0 else None
    return a, x, h0


@pytest.mark.parametrize("n", [1, 2, 7, 63, 64, 130])
@pytest.mark.parametrize("with_h0", [True, False])
def test_parallel_matches_naive_outputs_state_and_gradients(n, with_h0):
    a, x, h0 = _inputs(3, n, 5, with_h0=with_h0)
    h_ref, last_ref = scan_naive(a, x, h0)
    h, last = scan_parallel(a, x, h0)
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
    for fn in (scan_naive, scan_parallel):
        h, last = fn(a, b, h0)
        assert h.flatten().tolist() == [3.0, 2.75]
        assert last.item() == 2.75


def test_parallel_is_stable_for_long_sequences_with_tiny_gates():
    a = torch.full((1, 4096, 2), 1e-6)
    b = torch.ones(1, 4096, 2)
    h, _ = scan_parallel(a, b)
    assert torch.isfinite(h).all()
    torch.testing.assert_close(h[0, -1], torch.full((2,), 1.0 + 1e-6))


def test_chunked_with_carried_state_equals_all_at_once():
    a, x, h0 = _inputs(2, 63, 4)
    h_all, last_all = scan_parallel(a, x, h0)
    h1, s = scan_parallel(a[:, :20], x[:, :20], h0)
    h2, last = scan_parallel(a[:, 20:], x[:, 20:], s)
    torch.testing.assert_close(torch.cat([h1, h2], 1), h_all)
    torch.testing.assert_close(last, last_all)
