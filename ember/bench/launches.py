"""Launches per plasticity period: the aten ops one eager whole period of a slot memory dispatches.

The plasticity loop of a slot memory (ember.ops.slot_memory) is sequential over periods, so on a GPU its
cost is set by how many kernels one period launches: eagerly, each non-view aten op is one launch (a view
only re-describes a tensor). This module counts them, forward and backward, with a TorchDispatchMode:

- `memory_ops_per_period(memory)`: one memory runs fresh inputs of two lengths, `periods` = (4, 8) whole
  periods of its own period P by default, forward and backward; the per-period figure is the difference of
  the two counts over the difference in periods, so the fixed cost of a call (projections, the
  candidates of every span at once, the first periods, whose slots hold no gradient yet) drops out.
- `ops_per_period(model)`: the sum of that over every slot memory of a model (`ember bench`'s `ops/period`
  column; 0 for a model without memories).

Compiled whole periods (`compile_plasticity`) are not counted here: inductor's kernels do not dispatch
through aten; `benchmarks/reproduce/cpu_ratios.py` reads them from inductor's generated code instead.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ember.errors import EmberConfigError
from ember.ops.slot_memory import SlotMemory, slot_memories


class CountOps(TorchDispatchMode):
    """Counts the aten operations dispatched inside it (`ops`), and how many of them are views (`views`,
    no kernel)."""

    def __init__(self):
        super().__init__()
        self.ops = self.views = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        self.views += bool(func.is_view)
        return func(*args, **(kwargs or {}))

    @property
    def non_view(self) -> int:
        """The ops that run a kernel: every op but the views."""
        return self.ops - self.views


@dataclass(frozen=True)
class PeriodOps:
    """Aten ops per whole plasticity period, forward + backward: all of them, and the non-view ones (launches)."""

    ops: float
    non_view: float

    def __add__(self, other: PeriodOps) -> PeriodOps:
        return PeriodOps(self.ops + other.ops, self.non_view + other.non_view)


def _count_call(memory: SlotMemory, periods: int, batch: int, dtype: torch.dtype) -> CountOps:
    """Ops of one forward + backward of `memory` over `periods` whole periods from a fresh state; the
    memory's parameters start without gradients (so accumulation is the same in every call)."""
    device = next(memory.parameters()).device
    generator = torch.Generator().manual_seed(periods)
    x = torch.randn(batch, periods * memory.period, memory.d_model, generator=generator).to(device)
    x.requires_grad_(True)
    memory.zero_grad(set_to_none=True)
    autocast = nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)
    with CountOps() as count:
        with autocast:
            y, state = memory(x)
            loss = y.sum() + state.aux_loss
        if loss.requires_grad:  # a switched-off memory reads zeros: nothing to differentiate
            loss.backward()
    return count


def memory_ops_per_period(memory: SlotMemory, periods: tuple[int, int] = (4, 8), batch: int = 2,
                          dtype: torch.dtype = torch.float32) -> PeriodOps:
    """Aten ops one eager whole period of `memory` dispatches, forward and backward.

    Args:
        memory: a slot memory (LowRankPM, EpisodicStore, ...) on its device, in its current train/eval mode;
            whole periods are counted eagerly even where they are compiled (the compile mode is restored).
        periods: the two lengths, in whole periods of the memory's own period; both at least 3, where
            every added period costs the same (the first two carry first-commit costs).
        batch: streams of the random input (the count does not depend on it).
        dtype: float32, or bfloat16 for autocast as `ember bench` trains on CUDA (adds the casts).

    Returns:
        (count(long) - count(short)) / (long - short), for all ops and the non-view ones. The memory's
        gradients, compile mode and the global random state are left as they were.
    """
    short, long = periods
    if not 3 <= short < long:
        raise EmberConfigError(f"periods={periods}: give two lengths in whole periods, 3 <= short < long, "
                               "e.g. (4, 8) (the first two periods carry one-time costs)")
    mode, grads = memory.compile_mode, {p: p.grad for p in memory.parameters()}
    device = next(memory.parameters()).device
    memory.compile_periods(None)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            counts = [_count_call(memory, n, batch, dtype) for n in (short, long)]
    finally:
        memory.compile_periods(mode)
        for p, grad in grads.items():
            p.grad = grad
    return PeriodOps((counts[1].ops - counts[0].ops) / (long - short),
                     (counts[1].non_view - counts[0].non_view) / (long - short))


def ops_per_period(model: nn.Module, periods: tuple[int, int] = (4, 8), batch: int = 2,
                   dtype: torch.dtype = torch.float32) -> PeriodOps:
    """`memory_ops_per_period` summed over every slot memory of `model`, each at its own period: the ops one
    whole period of the model's plasticity loops dispatches (PeriodOps(0, 0) for a model without memories)."""
    total = PeriodOps(0.0, 0.0)
    for memory in slot_memories(model):
        total = total + memory_ops_per_period(memory, periods, batch, dtype)
    return total
