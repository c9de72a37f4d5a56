"""ember.ops.rope: the rotary angles and the rotation by hand (the attention tests use the same two functions on
both sides, so only a hand case pins the frequencies and the direction of the turn)."""

import math

import torch

from ember.ops.rope import apply_rope, rope_cos_sin


def test_angles_by_hand():
    # dim 4, base 100: inverse frequencies 100^(-0/4) = 1 and 100^(-2/4) = 0.1; angle = position * frequency
    cos, sin = rope_cos_sin(torch.tensor([0, 1, -3]), 4, base=100.0, dtype=torch.float64)
    angles = torch.tensor([[0.0, 0.0], [1.0, 0.1], [-3.0, -0.3]], dtype=torch.float64)
    torch.testing.assert_close(cos, angles.cos())
    torch.testing.assert_close(sin, angles.sin())


def test_each_pair_turns_counterclockwise_by_its_angle():
    cos, sin = rope_cos_sin(torch.tensor([1]), 4, base=100.0, dtype=torch.float64)  # angles 1 and 0.1
    x = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64).view(1, 1, 1, 4)  # pairs (1, 0) and (0, 1)
    # (1, 0) turned by 1 -> (cos 1, sin 1); (0, 1) turned by 0.1 -> (-sin 0.1, cos 0.1)
    want = torch.tensor([math.cos(1.0), math.sin(1.0), -math.sin(0.1), math.cos(0.1)], dtype=torch.float64)
    torch.testing.assert_close(apply_rope(x, cos, sin).flatten(), want)
