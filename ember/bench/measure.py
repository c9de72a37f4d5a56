"""`ember bench`: training and decoding speed, peak memory and per-stream state of configured models.

Letters: b batch, n context (tokens), v vocabulary.

What is timed (host clock, `torch.cuda.synchronize` before each reading on CUDA, median of the
timed repeats after the warm-up repeats):
- training step: forward of random bytes (b, n) in one call from a fresh state, next-byte
  cross-entropy (plus the controllers' aux losses, as in training), backward, AdamW step,
  zero_grad. No TBPTT chunking and no gradient clipping: one whole-context step, so models
  compare at equal tokens. tokens/s = b * n / median step time.
- decode: one stream (b = 1) is prefilled to each context length n (forward over chunks of
  `prefill_chunk` tokens with the state carried, no gradients), then `tokens` single bytes are
  decoded one call each with the state carried; per-token latency is the median of those calls.
  Decoding always runs eagerly: a full-attention cache grows by one key per token, which would
  recompile a compiled model at every step.
- state bytes: `state.nbytes()` of that stream after decoding at n (one stream, so per stream).

A context longer than a backbone's `max_context` (if it declares one), or one that runs out of
memory, gives a row with `skipped: <reason>` and the run goes on.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ember.bench.memory import free_device_memory, is_out_of_memory, peak_memory
from ember.errors import EmberConfigError

log = logging.getLogger("ember")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class BenchOptions:
    """Settings shared by every variant of one `ember bench` run (see `ember bench --help`)."""

    contexts: list[int] = field(default_factory=lambda: [2048, 8192, 16384])
    batch: int = 1
    steps: int = 5
    warmup: int = 2
    decode_tokens: int = 32
    prefill_chunk: int = 2048
    device: str = "auto"
    dtype: str = "auto"
    compile: str = "auto"
    compile_periods: str = "auto"
    lr: float = 1e-4
    seed: int = 0

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise EmberConfigError("--device cuda: no CUDA device is visible here; use --device cpu (or auto)")
        return torch.device(self.device)

    def resolved_dtype(self) -> torch.dtype:
        """bfloat16 autocast on CUDA and float32 on the CPU unless --dtype says otherwise."""
        if self.dtype == "auto":
            return torch.bfloat16 if self.resolved_device().type == "cuda" else torch.float32
        return DTYPES[self.dtype]

    def resolved_compile(self) -> bool:
        if self.compile == "auto":
            return self.resolved_device().type == "cuda"
        return self.compile == "true"

    def resolved_compile_periods(self) -> str | None:
        """torch.compile mode of the memories' whole plasticity periods, or None for eager.

        auto: compiled ("default" mode) exactly when the model is compiled.
        """
        if self.compile_periods == "auto":
            return "default" if self.resolved_compile() else None
        return None if self.compile_periods == "eager" else self.compile_periods


def parse_contexts(text: str) -> list[int]:
    """'2048,8192,16384' -> [2048, 8192, 16384]; anything else raises with the expected form."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < 2 for v in values):
        raise EmberConfigError(f"--contexts {text!r}: write context lengths (integers >= 2, in tokens) separated "
                               "by commas, e.g. --contexts 2048,8192,16384")
    return sorted(set(values))


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def random_tokens(batch: int, n: int, vocab: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Random byte ids (batch, n) int64 from a fixed seed (never zeros: real data is not constant)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, n), generator=generator).to(device)


def _train_step(forward: Callable, opt: torch.optim.Optimizer, tokens: torch.Tensor, device, dtype):
    """One timed unit: forward + loss + backward + optimizer step + zero_grad. tokens: (b, n + 1)."""
    with _autocast(device, dtype):
        logits, state = forward(tokens[:, :-1])  # (b, n, v)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
        aux = sum(state.collect("aux_loss"), loss.new_zeros(()))  # the memory controllers' budget terms
    (loss + aux).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def measure_training(model: nn.Module, context: int, batch: int, steps: int = 5, warmup: int = 2,
                     dtype: torch.dtype = torch.float32, forward: Callable | None = None,
                     lr: float = 1e-4, seed: int = 0) -> dict:
    """Training throughput of `model` (an EmberModel) on random bytes (batch, context).

    Args:
        model: the model, already on its device; its parameters are updated (lr is small).
        context: tokens per sequence n.
        batch: sequences per step b.
        steps: timed steps (median reported).
        warmup: untimed steps first (compilation, allocator, AdamW state).
        dtype: float32, or bfloat16 for autocast (weights stay float32, as in bf16-mixed training).
        forward: the callable to run (e.g. torch.compile(model)); default the model itself.
        lr: AdamW learning rate.
        seed: seed of the random bytes.

    Returns:
        tokens_per_s, step_ms_median, step_ms_all, first_step_s (includes compilation), peak_mem_bytes,
        peak_mem_method.
    """
    device = next(model.parameters()).device
    tokens = random_tokens(batch, context + 1, model.backbone.vocab_size, device, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=device.type == "cuda")
    model.train()
    times = []
    with peak_memory(device) as peak:
        for _ in range(warmup + steps):
            _sync(device)
            start = time.perf_counter()
            _train_step(forward or model, opt, tokens, device, dtype)
            _sync(device)
            times.append(time.perf_counter() - start)
    del opt
    step = statistics.median(times[warmup:])
    return {"tokens_per_s": batch * context / step, "step_ms_median": 1e3 * step,
            "step_ms_all": [round(1e3 * t, 3) for t in times[warmup:]], "first_step_s": times[0],
            "peak_mem_bytes": peak.bytes, "peak_mem_method": peak.method}


@torch.no_grad()
def _prefill(model, tokens: torch.Tensor, state, chunk: int, device, dtype):
    """Stream tokens (1, n) through the model in chunks with the state carried; returns state, seconds."""
    _sync(device)
    start = time.perf_counter()
    with _autocast(device, dtype):
        for i in range(0, tokens.shape[1], chunk):
            _, state = model(tokens[:, i : i + chunk], state)
    _sync(device)
    return state, time.perf_counter() - start


@torch.no_grad()
def _decode(model, tokens: torch.Tensor, state, device, dtype) -> tuple[object, list[float]]:
    """Feed tokens (1, t) one call per token with the state carried; returns state, seconds per token."""
    times = []
    with _autocast(device, dtype):
        for i in range(tokens.shape[1]):
            _sync(device)
            start = time.perf_counter()
            _, state = model(tokens[:, i : i + 1], state)
            _sync(device)
            times.append(time.perf_counter() - start)
    return state, times


def measure_decode(model: nn.Module, contexts: list[int], tokens: int = 32, dtype: torch.dtype = torch.float32,
                   prefill_chunk: int = 2048, warmup: int = 2, seed: int = 0) -> dict[int, dict]:
    """Decode latency of one stream as its context grows.

    The stream is prefilled up to each context in ascending order (continuing from the previous
    one; decoded tokens count as context), then `tokens` bytes are decoded one call each after
    `warmup` untimed calls.

    Returns:
        {context: {decode_ms_median, decode_ms_mean, decode_tokens_per_s, prefill_tokens_per_s, state_bytes}},
        or {context: {skipped: reason}} for contexts past the model's limit or out of memory
        (larger contexts are then skipped too).
    """
    device = next(model.parameters()).device
    model.eval()
    limit = getattr(model.backbone, "max_context", None)
    stream = random_tokens(1, max(contexts) + 1, model.backbone.vocab_size, device, seed + 1)
    extra = random_tokens(1, warmup + tokens, model.backbone.vocab_size, device, seed + 2)
    state, done, out, failure = None, 0, {}, None
    for context in sorted(contexts):
        if failure is None and limit is not None and context > limit:
            failure = f"context {context} > the backbone's max_context {limit}"
        if failure is not None:
            out[context] = {"skipped": failure}
            continue
        try:
            state, seconds = _prefill(model, stream[:, done : max(done, context)], state, prefill_chunk, device,
                                      dtype)
            prefilled, done = max(0, context - done), max(done, context)
            state, _ = _decode(model, extra[:, :warmup], state, device, dtype)
            state, times = _decode(model, extra[:, warmup:], state, device, dtype)
        except (RuntimeError, torch.OutOfMemoryError) as err:
            if not is_out_of_memory(err):
                raise
            failure, state = f"out of memory while decoding at context {context}", None
            free_device_memory(device)
            out[context] = {"skipped": failure}
            continue
        done += warmup + tokens
        out[context] = {"decode_ms_median": 1e3 * statistics.median(times),
                        "decode_ms_mean": 1e3 * statistics.fmean(times), "decode_tokens_per_s": len(times) / sum(times),
                        "prefill_tokens_per_s": prefilled / seconds if prefilled and seconds > 0 else None,
                        "state_bytes": state.nbytes()}
    return out


def measure_training_or_skip(model: nn.Module, context: int, opts: BenchOptions, forward: Callable | None) -> dict:
    """measure_training, or {skipped: reason} past the backbone's max_context or out of memory."""
    limit = getattr(model.backbone, "max_context", None)
    if limit is not None and context > limit:
        return {"skipped": f"context {context} > the backbone's max_context {limit}"}
    try:
        return measure_training(model, context, opts.batch, opts.steps, opts.warmup, opts.resolved_dtype(),
                                forward, opts.lr, opts.seed)
    except (RuntimeError, torch.OutOfMemoryError) as err:
        if not is_out_of_memory(err):
            raise
        model.zero_grad(set_to_none=True)
        free_device_memory(next(model.parameters()).device)
        return {"skipped": f"out of memory in training at batch {opts.batch} x context {context}"}
