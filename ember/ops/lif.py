"""Leaky integrate-and-fire neurons with a surrogate gradient, and their non-spiking twin.

Membrane equation (discrete time, soft reset by subtraction; Neftci, Mostafa & Zenke 2019):

    v_t = beta * v_{t-1} + x_t - theta * s_{t-1}
    s_t = H(v_t - theta)

x_t is the input current, beta in (0, 1) the per-channel leak, theta the threshold, H the
Heaviside step. The spike has zero derivative almost everywhere, so the backward pass uses
the fast-sigmoid surrogate (Zenke & Ganguli 2018, SuperSpike):

    ds/dv ~= 1 / (1 + k |v - theta|)^2

The reset term theta * s_{t-1} is detached (it counts as a constant in the backward pass), as
is common practice: the gradient flows through the leak and the input, not through the reset.

The reset makes the recurrence nonlinear in v, so there is no parallel (scan) form: the loop
in `leaky_integrate` *is* the reference and the implementation. It runs over short axes only
(frames within a patch, or tokens).

The non-spiking twin (`RateNeuron`) uses the same equation with s_t = sigmoid(k (v_t - theta)),
a smooth stand-in for the step: same parameters, continuous output (for ablations).

Letters: b batch (any leading dims), n time steps, c channels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ember.errors import EmberConfigError


class SpikeFunction(torch.autograd.Function):
    """s = H(u) forward, ds/du = 1 / (1 + k|u|)^2 backward (u = v - theta)."""

    @staticmethod
    def forward(ctx, u: Tensor, slope: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.slope = slope
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (u,) = ctx.saved_tensors
        return grad / (1.0 + ctx.slope * u.abs()).square(), None


def spike(u: Tensor, slope: float = 5.0) -> Tensor:
    """Heaviside spike of u = v - theta with the fast-sigmoid surrogate gradient of steepness `slope`."""
    return SpikeFunction.apply(u, slope)


def leaky_integrate(x: Tensor, beta: Tensor, theta: float, fire: Callable[[Tensor], Tensor],
                    v0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Step-by-step membrane loop: v_t = beta v_{t-1} + x_t - theta s_{t-1};  s_t = fire(v_t - theta).

    Args:
        x: (..., n, c) input currents.
        beta: (c,) leak in (0, 1).
        theta: firing threshold.
        fire: maps v - theta to the output s (spike with surrogate, or a sigmoid rate).
        v0: (..., c) initial membrane potential, zeros when None.
    Returns:
        s: (..., n, c) outputs, and v: (..., c) the membrane potential after the last step.
    """
    v = torch.zeros_like(x[..., 0, :]) if v0 is None else v0
    s = torch.zeros_like(v)
    out = []
    for t in range(x.shape[-2]):
        v = beta * v + x[..., t, :] - theta * s.detach()
        s = fire(v - theta)
        out.append(s)
    return torch.stack(out, dim=-2), v


class _LeakyNeuron(nn.Module):
    """Shared parameters of both neuron kinds: a learned per-channel leak beta = sigmoid(b)."""

    def __init__(self, channels: int, beta: float = 0.9, theta: float = 1.0, slope: float = 5.0):
        super().__init__()
        if not 0 < beta < 1 or theta <= 0 or slope <= 0:
            raise EmberConfigError(f"neuron needs 0 < beta={beta} < 1, theta={theta} > 0 and slope={slope} > 0")
        self.beta_logit = nn.Parameter(torch.full((channels,), float(torch.logit(torch.tensor(beta)))))
        self.theta, self.slope = theta, slope
        self.last_rate: Tensor | None = None  # detached mean output of the last forward, for logging

    @property
    def beta(self) -> Tensor:
        return torch.sigmoid(self.beta_logit)

    def fire(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., n, c) currents over n time steps -> (..., n, c) outputs; the membrane starts at rest.

        The membrane runs in float32 (or float64) even under mixed precision; the output has x's dtype.
        """
        dtype = torch.promote_types(x.dtype, torch.float32)
        s, _ = leaky_integrate(x.to(dtype), self.beta.to(dtype), self.theta, self.fire)
        self.last_rate = s.detach().mean()
        return s.to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.beta_logit.numel()}, theta={self.theta}, slope={self.slope}"


class LIFNeuron(_LeakyNeuron):
    """Leaky integrate-and-fire: binary spikes, surrogate gradient (see the module docstring)."""

    def fire(self, u: Tensor) -> Tensor:
        return spike(u, self.slope)


class RateNeuron(_LeakyNeuron):
    """Non-spiking twin of LIFNeuron: the same leaky membrane, output sigmoid(slope * (v - theta))."""

    def fire(self, u: Tensor) -> Tensor:
        return torch.sigmoid(self.slope * u)
