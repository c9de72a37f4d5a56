"""ember.ops.lif: leaky integrate-and-fire neurons by hand, the surrogate gradient, the rate twin."""

import math

import pytest
import torch

from ember.ops.lif import LIFNeuron, RateNeuron, leaky_integrate, spike

t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
CURRENTS = t(0.6, 0.5, 0.3, 0.0).view(1, 4, 1)  # (b, n, c)


def test_lif_membrane_and_spikes_by_hand():
    # beta 0.5, theta 1, constant input 0.6:
    # v1 = 0.6; v2 = 0.3 + 0.6 = 0.9; v3 = 0.45 + 0.6 = 1.05 -> spike; v4 = 0.525 + 0.6 - 1 = 0.125
    x = torch.full((1, 4, 1), 0.6, dtype=torch.float64)
    s, v = leaky_integrate(x, torch.tensor([0.5], dtype=torch.float64), 1.0, spike)
    assert s.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    assert v.item() == pytest.approx(0.125)
    s3, v3 = leaky_integrate(x[:, :3], torch.tensor([0.5], dtype=torch.float64), 1.0, spike)
    assert v3.item() == pytest.approx(1.05) and s3[0, -1, 0] == 1.0


def test_lif_membrane_by_hand_with_a_leak_unlike_one_minus_itself():
    # beta 0.8 (beta = 0.5 cannot tell beta from 1 - beta), theta 1, currents 0.6, 0.5, 0.3, 0:
    # v1 = 0.6; v2 = 0.48 + 0.5 = 0.98; v3 = 0.784 + 0.3 = 1.084 -> spike; v4 = 0.8672 + 0 - 1 = -0.1328
    s, v = leaky_integrate(CURRENTS, t(0.8), 1.0, spike)
    assert s.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    assert v.item() == pytest.approx(-0.1328)


def test_gradient_across_a_spike_flows_through_the_leak_only():
    """The reset theta s_{t-1} is a constant in the backward pass, so dv_4/dx_t = beta^(4-t) exactly although
    step 3 spikes, and ds_4/dx_t = beta^(4-t) / (1 + k |v_4 - theta|)^2 (float64, by hand)."""
    x = CURRENTS.clone().requires_grad_()
    s, v = leaky_integrate(x, t(0.8), 1.0, lambda u: spike(u, slope=5.0))
    leak = t(0.8**3, 0.8**2, 0.8, 1.0)
    (grad_v,) = torch.autograd.grad(v.sum(), x, retain_graph=True)
    torch.testing.assert_close(grad_v.flatten(), leak)
    (grad_s,) = torch.autograd.grad(s[0, -1, 0], x)
    torch.testing.assert_close(grad_s.flatten(), leak / (1.0 + 5.0 * abs(-0.1328 - 1.0)) ** 2)


def test_surrogate_gradient_is_the_fast_sigmoid():
    u = torch.tensor([-0.5, 0.0, 0.2], requires_grad=True)
    spike(u, slope=5.0).sum().backward()
    assert torch.allclose(u.grad, 1.0 / (1.0 + 5.0 * u.detach().abs()) ** 2)
    neuron = LIFNeuron(3, beta=0.9)
    x = torch.rand(2, 6, 3, requires_grad=True)
    neuron(x * 2).sum().backward()
    assert x.grad.abs().sum() > 0 and neuron.beta_logit.grad.abs().sum() > 0


def test_rate_neuron_is_the_same_size_and_continuous():
    lif, rate = LIFNeuron(4), RateNeuron(4)
    x = torch.rand(2, 5, 4) * 2
    assert set(lif(x).unique().tolist()) <= {0.0, 1.0}
    assert sum(p.numel() for p in lif.parameters()) == sum(p.numel() for p in rate.parameters())


def test_rate_neuron_by_the_equation():
    """The same membrane with s_t = sigmoid(k (v_t - theta)) (k = 2, theta = 1, beta = 0.8), step by step."""
    rate = RateNeuron(1, beta=0.8, theta=1.0, slope=2.0)
    v, s, want = 0.0, 0.0, []
    for x in CURRENTS.flatten().tolist():
        v = 0.8 * v + x - 1.0 * s
        s = 1.0 / (1.0 + math.exp(-2.0 * (v - 1.0)))
        want.append(s)
    torch.testing.assert_close(rate(CURRENTS).flatten(), t(*want))
