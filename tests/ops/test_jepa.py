"""ember.ops.jepa: the block mask that splits patches into context and target."""

import pytest
import torch

from ember.errors import EmberDataError
from ember.ops.jepa import block_mask


def test_block_mask_splits_every_patch_once():
    ctx, tgt = block_mask(25, 3, 4, torch.Generator().manual_seed(0))
    assert sorted(torch.cat((ctx, tgt)).tolist()) == list(range(25)) and 1 <= len(tgt) <= 12
    with pytest.raises(EmberDataError, match="block_len"):
        block_mask(4, 1, 4)
