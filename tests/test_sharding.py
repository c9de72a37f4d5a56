"""ember.sharding: FSDP2 units of the composite (the 2-process run against DDP is in tests/cli/test_distributed.py)."""

import pytest
import torch
from torch import nn

from ember.errors import EmberConfigError
from ember.plugins.backbone.nml import NMLBackbone
from ember.sharding import plugin_class, shard_composite
from helpers import DEBUG, build_model


def test_a_parameter_outside_the_slots_is_refused_before_anything_is_sharded():
    model = build_model(DEBUG)
    model.extra = nn.Parameter(torch.zeros(1))  # would train apart on each rank: no DDP around the module
    with pytest.raises(EmberConfigError, match=r"\['extra'\] lie outside them: train this model with"):
        shard_composite(model, mesh=None)
    assert not any(type(m).__name__.startswith("FSDP") for m in model.modules())


def test_a_wrapped_plugin_keeps_its_own_name_in_checkpoints():
    from torch.distributed.fsdp import FSDPModule

    wrapped = type("FSDPNMLBackbone", (FSDPModule, NMLBackbone), {})  # what fully_shard makes of a backbone
    assert plugin_class(wrapped.__new__(wrapped)) is NMLBackbone
    assert plugin_class(nn.Linear(2, 2)) is nn.Linear
