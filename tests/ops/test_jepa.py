"""ember.ops.jepa: the block mask that splits patches into context and target, and the loss by hand."""

import pytest
import torch

from ember.errors import EmberDataError
from ember.ops.jepa import block_mask, jepa_loss


def test_block_mask_splits_every_patch_once():
    ctx, tgt = block_mask(25, 3, 4, torch.Generator().manual_seed(0))
    assert sorted(torch.cat((ctx, tgt)).tolist()) == list(range(25)) and 1 <= len(tgt) <= 12
    with pytest.raises(EmberDataError, match="block_len"):
        block_mask(4, 1, 4)


def test_one_block_is_block_len_consecutive_patches_and_may_start_anywhere_it_fits():
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(60):
        _, tgt = block_mask(6, 1, 4, g)
        assert tgt.tolist() == list(range(tgt[0], tgt[0] + 4))
        starts.add(int(tgt[0]))
    assert starts == {0, 1, 2}  # the last block ends on the last patch


def test_loss_by_hand_against_layer_normed_targets_without_their_gradient():
    prediction = torch.zeros(1, 1, 2, requires_grad=True)
    target = torch.tensor([[[1.0, 3.0]]], requires_grad=True)
    loss = jepa_loss(prediction, target)
    # LN(1, 3) = (-1, 1) (up to LayerNorm's eps); smooth L1 with |error| < 1: mean of 0.5 * 1^2
    assert loss.item() == pytest.approx(0.5, rel=1e-4)
    loss.backward()
    assert target.grad is None and prediction.grad is not None
