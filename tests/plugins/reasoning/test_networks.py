"""The TRM networks (MixerNetwork, AttentionNetwork): shapes, refusals, 2-D rotary positions, pre-norm."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from ember.errors import EmberConfigError
from ember.plugins.reasoning.networks import AttentionNetwork, MixerNetwork


@pytest.mark.parametrize("network", [partial(MixerNetwork, layers=2), partial(AttentionNetwork, layers=2, heads=4),
                                     partial(AttentionNetwork, layers=2, heads=4, norm="pre"),
                                     partial(AttentionNetwork, layers=2, heads=4, positions="2d")])
def test_networks_map_b_s_d_to_b_s_d_and_mix_positions(network):
    torch.manual_seed(0)
    f = network(32, 9)
    h = torch.randn(2, 9, 32)
    out = f(h)
    assert out.shape == h.shape and torch.isfinite(out).all()
    h2 = h.clone()
    h2[:, 0] += 1.0
    assert not torch.allclose(f(h2)[:, 5], out[:, 5])  # position 5 sees position 0


def test_attention_network_refuses_odd_head_width_and_unknown_norm():
    with pytest.raises(EmberConfigError, match="heads"):
        AttentionNetwork(30, 9, heads=4)
    with pytest.raises(EmberConfigError, match="'post'"):
        AttentionNetwork(32, 9, heads=4, norm="sandwich")


def test_2d_rotary_positions_see_row_and_column_offsets_and_no_wrap_around():
    from ember.ops.rope import apply_rope
    from ember.plugins.reasoning.networks import rotary_tables

    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 1, 1, 8)  # one head of width 8
    side = 5

    def score(positions: str, a: tuple[int, int], b: tuple[int, int]) -> float:
        cos, sin = rotary_tables(side * side, 8, positions)
        i, j = a[0] * side + a[1], b[0] * side + b[1]
        return (apply_rope(q, cos[i:i + 1], sin[i:i + 1]) * apply_rope(k, cos[j:j + 1], sin[j:j + 1])).sum().item()

    for offset in ((0, 1), (1, 0), (2, -1)):  # the same (row, column) offset from two places: the same score
        here, there = ((r + offset[0], c + offset[1]) for r, c in ((1, 1), (2, 3)))
        assert abs(score("2d", (1, 1), here) - score("2d", (2, 3), there)) < 1e-5
    right_neighbour = score("1d", (0, 0), (0, 1))
    wrapped = score("1d", (0, 4), (1, 0))  # end of a row, start of the next: one apart in the flat sequence
    assert abs(right_neighbour - wrapped) < 1e-5
    assert abs(score("2d", (0, 0), (0, 1)) - score("2d", (0, 4), (1, 0))) > 0.1
    small, large = AttentionNetwork(32, 9, heads=4, positions="2d"), AttentionNetwork(32, 25, heads=4, positions="2d")
    large.load_state_dict(small.state_dict())  # no weight depends on the grid size
    with pytest.raises(EmberConfigError, match="square seq_len"):
        AttentionNetwork(32, 10, heads=4, positions="2d")
    with pytest.raises(EmberConfigError, match="divisible by 4"):
        AttentionNetwork(24, 9, heads=4, positions="2d")  # head width 6
    with pytest.raises(EmberConfigError, match="'1d'"):
        AttentionNetwork(32, 9, heads=4, positions="3d")


def test_pre_norm_blocks_are_the_same_weights_wired_differently():
    torch.manual_seed(0)
    post = AttentionNetwork(32, 9, layers=1, heads=4)
    pre = AttentionNetwork(32, 9, layers=1, heads=4, norm="pre")
    pre.load_state_dict(post.state_dict())
    h = torch.randn(2, 9, 32)
    a = post.attend(0, h)
    h1 = post.norm(h + a)
    assert torch.allclose(post(h), post.norm(h1 + post.mlps[0](h1)), atol=1e-6)
    r = h + pre.attend(0, pre.norm(h))
    assert torch.allclose(pre(h), pre.norm(r + pre.mlps[0](pre.norm(r))), atol=1e-6)
    assert not torch.allclose(pre(h), post(h), atol=1e-3)
