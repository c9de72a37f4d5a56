"""ember.ops.lif: leaky integrate-and-fire neurons by hand, the surrogate gradient, the rate twin."""

import pytest
import torch

from ember.ops.lif import LIFNeuron, RateNeuron, leaky_integrate, spike


def test_lif_membrane_and_spikes_by_hand():
    # beta 0.5, theta 1, constant input 0.6:
    # v1 = 0.6; v2 = 0.3 + 0.6 = 0.9; v3 = 0.45 + 0.6 = 1.05 -> spike; v4 = 0.525 + 0.6 - 1 = 0.125
    x = torch.full((1, 4, 1), 0.6, dtype=torch.float64)
    s, v = leaky_integrate(x, torch.tensor([0.5], dtype=torch.float64), 1.0, spike)
    assert s.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    assert v.item() == pytest.approx(0.125)
    s3, v3 = leaky_integrate(x[:, :3], torch.tensor([0.5], dtype=torch.float64), 1.0, spike)
    assert v3.item() == pytest.approx(1.05) and s3[0, -1, 0] == 1.0


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
    assert 0 < rate(x).min() and rate(x).max() < 1
