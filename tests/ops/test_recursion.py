"""ember.ops.recursion: the TRM recursion equations and which cycles the gradient flows through."""

from __future__ import annotations

import pytest
import torch

from ember.ops.recursion import deep_recursion, latent_recursion


def test_latent_recursion_follows_the_equations_by_hand():
    f = lambda h: 0.5 * h  # noqa: E731
    x, y, z = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0])
    y1, z1 = latent_recursion(f, x, y, z, n=2)
    # z <- 0.5 (1 + 2 + 4) = 3.5; z <- 0.5 (1 + 2 + 3.5) = 3.25; y <- 0.5 (2 + 3.25) = 2.625
    assert z1.item() == pytest.approx(3.25) and y1.item() == pytest.approx(2.625)


def test_deep_recursion_differentiates_only_the_last_cycle():
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    f = lambda h: torch.tanh(w * h)  # noqa: E731
    x, y, z = (torch.randn(3, dtype=torch.float64) for _ in range(3))
    y_deep, _ = deep_recursion(f, x, y, z, n=3, T=3)
    (grad_deep,) = torch.autograd.grad(y_deep.sum(), w)
    with torch.no_grad():  # the same T-1 cycles, detached by hand
        y2, z2 = latent_recursion(f, x, *latent_recursion(f, x, y, z, 3), 3)
    y_last, _ = latent_recursion(f, x, y2, z2, 3)
    (grad_last,) = torch.autograd.grad(y_last.sum(), w)
    assert torch.allclose(y_deep, y_last) and torch.allclose(grad_deep, grad_last)
    y_full, _ = latent_recursion(f, x, *latent_recursion(f, x, *latent_recursion(f, x, y, z, 3), 3), 3)
    (grad_full,) = torch.autograd.grad(y_full.sum(), w)
    assert not torch.allclose(grad_full, grad_deep)  # backprop through all cycles would differ


def test_one_step_gradient_differentiates_only_the_last_two_updates():
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    f = lambda h: torch.tanh(w * h)  # noqa: E731
    x, y, z = (torch.randn(3, dtype=torch.float64) for _ in range(3))
    y_one, z_one = deep_recursion(f, x, y, z, n=3, T=2, one_step_gradient=True)
    (grad_one,) = torch.autograd.grad(y_one.sum(), w)
    with torch.no_grad():  # a cycle and two latent updates, detached by hand
        y1, z1 = latent_recursion(f, x, y, z, 3)
        z1 = f(x + y1 + f(x + y1 + z1))
    z_last = f(x + y1 + z1)
    y_last = f(y1 + z_last)
    (grad_last,) = torch.autograd.grad(y_last.sum(), w)
    assert torch.allclose(y_one, y_last) and torch.allclose(z_one, z_last) and torch.allclose(grad_one, grad_last)
    y_cycle, _ = deep_recursion(f, x, y, z, n=3, T=2)
    (grad_cycle,) = torch.autograd.grad(y_cycle.sum(), w)
    assert torch.allclose(y_cycle, y_one) and not torch.allclose(grad_cycle, grad_one)  # same values, less gradient
