"""Peak memory of a block of work, on CUDA exactly and on the CPU approximately.

- CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`: every live tensor
  at the peak (weights, gradients, optimizer state, activations), caching-allocator slack excluded.
- CPU (Linux): the growth of the process' peak resident set during the block. The kernel's
  high-water mark (VmHWM) is reset to the current RSS by writing 5 to /proc/self/clear_refs,
  and the result is VmHWM after the block minus VmRSS before it: what the block added on top
  of what was already resident (weights are, so they are not counted; gradients, optimizer
  state and activations are). Freed memory that the C allocator keeps is returned first with
  malloc_trim, but the figure stays approximate. Without clear_refs, `ru_maxrss` growth is used,
  which reads 0 whenever an earlier block peaked higher (a lower bound).
"""

from __future__ import annotations

import ctypes
import gc
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


@dataclass
class Peak:
    """Result of `peak_memory`: bytes, and how they were measured."""

    bytes: int = 0
    method: str = ""


def _status_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _release_freed_memory():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _can_reset_hwm() -> bool:
    try:
        CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
        return True
    except (OSError, KeyError):
        return False


def cpu_peak_method() -> str:
    """How CPU peaks are measured on this machine (written into the benchmark's JSON)."""
    if _can_reset_hwm():
        return "cpu: growth of peak RSS (VmHWM reset via /proc/self/clear_refs), approximate"
    return "cpu: growth of ru_maxrss (0 when an earlier block peaked higher), lower bound"


@contextmanager
def peak_memory(device: torch.device) -> Iterator[Peak]:
    """Measure the peak memory of the enclosed block on `device`; read `.bytes` after the block."""
    peak = Peak()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield peak
        torch.cuda.synchronize(device)
        peak.bytes, peak.method = torch.cuda.max_memory_allocated(device), "cuda: max_memory_allocated"
        return
    _release_freed_memory()
    if _can_reset_hwm():
        before = _status_kib("VmRSS")
        CLEAR_REFS.write_text("5")
        yield peak
        peak.bytes = max(0, _status_kib("VmHWM") - before) * 1024
        peak.method = "cpu: peak RSS growth (VmHWM reset), approximate"
        return
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield peak
    peak.bytes = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    peak.method = "cpu: ru_maxrss growth, lower bound"


def is_out_of_memory(err: BaseException) -> bool:
    """True for CUDA OOM and for the CPU allocator's failure to allocate."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def free_device_memory(device: torch.device):
    """After an OOM: drop the failed attempt's tensors so the next measurement starts clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
