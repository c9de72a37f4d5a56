"""Explicit per-stream fast state.

Every piece of fast state (scan state, attention cache, later PM/EM) is a dataclass of
tensors or nested states whose leading dimension is the stream (batch) index. It is passed
into `forward` and returned from it, never stored in module buffers (DDP broadcasts buffers
from rank 0 and would overwrite other ranks' streams).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import Tensor


class StateBase:
    """Mixin for dataclass states: tree map, detach (TBPTT), reset by mask, size, flat dict."""

    def map(self, fn: Callable[[Tensor], Tensor]):
        """Apply fn to every tensor leaf; returns a new state of the same structure."""
        return type(self)(**{f.name: _map(getattr(self, f.name), fn) for f in dataclasses.fields(self)})

    def detach(self):
        """Cut the autograd graph (truncated BPTT between chunks)."""
        return self.map(Tensor.detach)

    def reset(self, mask: Tensor):
        """Return the state with streams where mask (b,) is True set to their initial value."""
        return type(self)(**{f.name: _reset(getattr(self, f.name), mask) for f in dataclasses.fields(self)})

    def collect(self, name: str) -> list[Tensor]:
        """Every tensor leaf stored under a field called `name`, anywhere in the tree."""
        return [t for key, t in self.tensors().items() if key.rsplit(".", 1)[-1] == name]

    def fill(self, flat: dict[str, Tensor], prefix: str = ""):
        """A state of this structure with every tensor taken from `flat` (names as in `tensors()`)."""
        out = {}
        for f in dataclasses.fields(self):
            out[f.name] = _fill(getattr(self, f.name), flat, f"{prefix}{f.name}")
        return type(self)(**out)

    def nbytes(self) -> int:
        """Bytes held by the state (all streams)."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Flat {dotted.name: tensor} view, e.g. for safetensors files."""
        out: dict[str, Tensor] = {}
        for f in dataclasses.fields(self):
            _flatten(getattr(self, f.name), f"{prefix}{f.name}", out)
        return out


def _map(x, fn):
    if isinstance(x, Tensor):
        return fn(x)
    if isinstance(x, StateBase):
        return x.map(fn)
    if isinstance(x, (list, tuple)):
        return type(x)(_map(v, fn) for v in x)
    return x


def _reset(x, mask):
    if isinstance(x, StateBase):
        return x.reset(mask)
    if isinstance(x, (list, tuple)):
        return type(x)(_reset(v, mask) for v in x)
    if isinstance(x, Tensor) and x.dim() == 0:  # batch-wide scalars (clocks, losses) are not per stream
        return x
    if isinstance(x, Tensor):  # default initial value of a plain tensor leaf is zero
        keep = (~mask).to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return x * keep
    return x


def _fill(x, flat: dict, name: str):
    if isinstance(x, Tensor):
        if name not in flat:
            raise KeyError(name)
        value = flat[name]
        if value.shape != x.shape:
            raise ValueError(f"{name}: stored shape {tuple(value.shape)}, model expects {tuple(x.shape)}")
        return value.to(device=x.device, dtype=x.dtype)
    if isinstance(x, StateBase):
        return x.fill(flat, prefix=name + ".")
    if isinstance(x, (list, tuple)):
        return type(x)(_fill(v, flat, f"{name}.{i}") for i, v in enumerate(x))
    return x


def _flatten(x, name: str, out: dict):
    if isinstance(x, Tensor):
        out[name] = x
    elif isinstance(x, StateBase):
        out.update(x.tensors(prefix=name + "."))
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            _flatten(v, f"{name}.{i}", out)


@dataclasses.dataclass
class ScanState(StateBase):
    """State of an affine scan mixer. h: (b, d)."""

    h: Tensor


@dataclasses.dataclass
class LayerStates(StateBase):
    """States of a stack of layers, one entry per layer (each any StateBase)."""

    layers: list


