"""Fully sharded data parallelism (FSDP2, `torch.distributed.fsdp.fully_shard`) for the composite, under Lightning's
ModelParallelStrategy: parameters, gradients and optimizer state split across the data-parallel ranks.

Units, innermost first: each residual layer of a backbone's TokenStack, then each filled slot (backbone, sensory,
reasoning, consolidator) for what is left in it. A unit's parameters are gathered for its forward and backward and
sharded again after, so every slot must be called through its own forward (EmberModel does). Every parameter must
sit in a unit: ModelParallelStrategy does not wrap the module in DDP, so a parameter outside would train apart on
each rank.
"""

from __future__ import annotations

from torch import nn

from ember.errors import EmberConfigError
from ember.ops.stack import TokenStack

SLOTS = ("backbone", "sensory", "reasoning", "consolidator")


def shard_composite(model: nn.Module, mesh) -> list[str]:
    """Apply fully_shard to the layers and slots of `model` on `mesh` (a 1-D data-parallel DeviceMesh); the names of
    the units, innermost first. Refuses a model with parameters outside its slots."""
    from torch.distributed.fsdp import fully_shard  # deferred: torch.distributed is not needed otherwise

    slots = [(name, getattr(model, name, None)) for name in SLOTS]
    slots = [(name, module) for name, module in slots if isinstance(module, nn.Module)]
    inside = {id(p) for _, module in slots for p in module.parameters()}
    outside = [name for name, p in model.named_parameters() if id(p) not in inside]
    if outside:
        raise EmberConfigError(f"FSDP shards the slots {', '.join(n for n, _ in slots)}, but {outside[:3]} lie "
                               "outside them: train this model with --trainer.strategy ddp")
    units = []
    for name, module in slots:
        for stack_name, stack in ((n, m) for n, m in module.named_modules() if isinstance(m, TokenStack)):
            for i, layer in enumerate(stack.layers):
                fully_shard(layer, mesh=mesh)
                units.append(f"{name}.{stack_name}.layers.{i}".replace("..", "."))
        if any(True for _ in module.parameters()):
            fully_shard(module, mesh=mesh)
            units.append(name)
    return units


def plugin_class(module: nn.Module) -> type:
    """The class a module was built as, also once fully_shard wrapped it (FSDP2 turns an `X` into an `FSDPX`, a
    subclass of FSDPModule and X): checkpoints name their plugins by it."""
    try:
        from torch.distributed.fsdp import FSDPModule  # deferred: torch.distributed loads only where it is used
    except ImportError:  # a torch without FSDP2: nothing can be wrapped
        return type(module)
    return next(c for c in type(module).__mro__ if not issubclass(c, FSDPModule))
