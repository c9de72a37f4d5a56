"""A memory read as a residual layer: x += memory(norm x), with the memory's state carried.

Letters: b batch, n tokens, d width.
"""

from __future__ import annotations

from torch import Tensor, nn

from ember.state import StateBase


class MemoryReadLayer(nn.Module):
    """Wraps a memory plugin (EM once per block) as `(x, state) -> (x, state)`."""

    def __init__(self, d_model: int, memory: nn.Module):
        super().__init__()
        self.norm = nn.RMSNorm(d_model)
        self.memory = memory

    def forward(self, x: Tensor, state: StateBase | None = None) -> tuple[Tensor, StateBase]:
        """x: (b, n, d) -> x + read-out (b, n, d), memory state."""
        y, state = self.memory(self.norm(x), state)
        return x + y, state

    def flush(self, state: StateBase | None) -> StateBase | None:
        """Session end: the memory commits its open span."""
        return None if state is None else self.memory.flush(state)
