"""CPU ratios of issue #6, each measured within one process (so a shared CPU slows both sides alike).

1. Parallel scans vs their step-by-step reference at n=1024: `scan_parallel` (doubling over the
   whole sequence), `scan_chunked` (the default) and `scan_naive` (ember/ops/scan.py) are first
   checked to agree in float64 (outputs and final state), then timed in float32, forward and
   forward+backward, median of repeats after a warm-up. Ratio = naive time / fast time (> 1: the
   fast scan is faster). Also the bytes each keeps for the backward (its activation memory).
2. Windowed attention at n=1024, W=64: the block-local fast path (`attend_blocked`) against the
   dense-mask reference (`attend_dense`), forward+backward. Ratio = dense time / blocked time.
3. Memory read/commit overhead: the same NML model with PM+EM and without memories (the
   quickstart by default, and it with configs/ablate/no_memory.yaml), training step and
   decoding measured by `ember bench`'s functions, the variants in turn within each round (so machine load moves
   them together). Ratio = time with memories / time without, per round; median and range reported.
   Boundary cost: the PM+EM model again with every memory's period set to the context, so a
   training step commits once (at its end) instead of every P tokens; the share of the step that
   the boundaries cost = 1 - time(one boundary) / time(every P tokens). And the PM+EM model with its
   whole plasticity periods compiled (`compile_plasticity`) against a copy left eager, timed in turn.
4. Ops per plasticity period: the aten operations (forward and backward) one eager whole period of a
   PM and of an EM layer dispatches, counted as the difference between 8 and 4 periods
   (`ember.bench.launches`, which also gives `ember bench` its ops/period column). On a GPU
   each non-view op is a kernel launch, so this is the launch count the sequential loop pays.
   Compiled, the kernels one whole period launches: fused kernels and library calls (matmuls, top-k,
   sort) in the call functions of inductor's generated code for its forward and backward graphs
   (CPU inductor; a GPU build fuses with Triton instead, so its count differs somewhat).

    python benchmarks/reproduce/cpu_ratios.py [--n 1024] [--window 64] [--context 1024] [--threads 1] [--rounds 5]
        [--out runs/bench/cpu_ratios.json]

Letters: b batch, n sequence, d channels.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import re
import statistics
import time
from pathlib import Path

import torch

from ember.bench.launches import memory_ops_per_period
from ember.bench.measure import measure_decode, measure_training
from ember.bench.run import build_variant
from ember.ops.attention import attend_blocked, attend_dense
from ember.ops.scan import scan_chunked, scan_naive, scan_parallel
from ember.ops.slot_memory import compile_plasticity
from ember.plugins.memory.episodic import EpisodicStore
from ember.plugins.memory.procedural import LowRankPM
from ember.plugins.neuromod.learned import LearnedNeuromodulator

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/reproduce/ -> the repository root
log = logging.getLogger("ember")


def scan_inputs(b: int, n: int, d: int, dtype: torch.dtype, seed: int = 0):
    """Gates a (b, n, d) in (0, 1), inputs x (b, n, d) and a start state h0 (b, d), all random."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.sigmoid(torch.randn(b, n, d, generator=gen, dtype=dtype) + 2.0)
    x = torch.randn(b, n, d, generator=gen, dtype=dtype)
    return a, x, torch.randn(b, d, generator=gen, dtype=dtype)


FAST_SCANS = {"parallel": scan_parallel, "chunked": scan_chunked}


def scans_agree(b: int, n: int, d: int) -> float:
    """Largest relative difference of outputs and final states between each fast scan and the reference, float64."""
    a, x, h0 = scan_inputs(b, n, d, torch.float64, seed=1)
    h1, last1 = scan_naive(a, x, h0)
    worst = 0.0
    for name, fn in FAST_SCANS.items():
        h2, last2 = fn(a, x, h0)
        err = max(((h1 - h2).norm() / h1.norm()).item(), ((last1 - last2).norm() / last1.norm()).item())
        if err > 1e-10:
            raise SystemExit(f"scan_{name} disagrees with scan_naive (relative error {err:.2e}): fix the scan first")
        worst = max(worst, err)
    return worst


def saved_for_backward(fn, a, x, h0) -> int:
    """Bytes of the tensors autograd keeps from one forward of the scan (its activation memory)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    leaves = [t.clone().requires_grad_() for t in (a, x, h0)]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*leaves)
    return total


def time_alternating(fns: dict, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each callable, run in turn within every repeat (a load spike hits all of them)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _forward(fn, a, x, h0):
    with torch.no_grad():
        fn(a, x, h0)


def _forward_backward(fn, a, x, h0):
    leaves = [t.clone().requires_grad_() for t in (a, x, h0)]
    fn(*leaves)[0].sum().backward()


def scan_ratio(b: int, n: int, d: int, repeats: int) -> dict:
    error = scans_agree(b, min(n, 257), d)
    a, x, h0 = scan_inputs(b, n, d, torch.float32)
    out = {"shape": [b, n, d], "max_rel_error_float64": error}
    scans = {"naive": scan_naive, **FAST_SCANS}
    for step, run in (("forward", _forward), ("fwd_bwd", _forward_backward)):
        medians = time_alternating({name: functools.partial(run, fn, a, x, h0) for name, fn in scans.items()}, repeats)
        out.update({f"{name}_{step}_ms": 1e3 * t for name, t in medians.items()})
        out.update({f"{step}_naive_over_{name}": medians["naive"] / medians[name] for name in FAST_SCANS})
    out.update({f"{name}_saved_MiB": saved_for_backward(fn, a, x, h0) / 2**20 for name, fn in scans.items()})
    return out


def attention_ratio(n: int, window: int, repeats: int, b: int = 4, h: int = 4, e: int = 32) -> dict:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, n, e, generator=gen) for _ in range(3))
    no_cache = torch.ones(b, 0, dtype=torch.bool)

    def fwd_bwd(fn):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        fn(*leaves).sum().backward()

    fns = {"dense": functools.partial(fwd_bwd, lambda q, k, v: attend_dense(q, k, v, 0, window, None)),
           "blocked": functools.partial(fwd_bwd, lambda q, k, v: attend_blocked(q, k, v, 0, window, no_cache))}
    medians = time_alternating(fns, repeats)
    return {"shape": [b, h, n, e], "window": window, **{f"{name}_fwd_bwd_ms": 1e3 * t for name, t in medians.items()},
            "dense_over_blocked": medians["dense"] / medians["blocked"]}


def memory_overhead(config: str, overlay: str, context: int, batch: int, rounds: int, decode_tokens: int) -> dict:
    """Training step and decode latency of the PM+EM model, it without memories, and it with one boundary per step,
    the three measured in turn within every round (a load spike hits all of them); ratios per round, so their
    median and range are reported."""
    out = {"config": config, "context": context, "batch": batch, "rounds": rounds}
    one_boundary = [f"--model.init_args.backbone.init_args.{kind}.init_args.period={context}" for kind in ("pm", "em")]
    variants = {"pm_em": ["--config", config], "none": ["--config", config, "--config", overlay],
                "pm_em_one_boundary": ["--config", config, *one_boundary]}
    models = {name: build_variant(args) for name, args in variants.items()}
    for model in models.values():  # warm-up: allocator, AdamW state, first-call costs
        measure_training(model, context, batch, steps=1, warmup=1)
    train = {name: [] for name in models}
    decode = {name: [] for name in models}
    for i in range(rounds):
        for name, model in models.items():
            train[name].append(measure_training(model, context, batch, steps=1, warmup=0)["step_ms_median"])
            one = measure_decode(model, [context], tokens=decode_tokens)[context]
            decode[name].append(one["decode_ms_median"])
            out.setdefault(name, {"params": sum(p.numel() for p in model.parameters()),
                                  "state_bytes": one["state_bytes"]})
        log.info("memory overhead, round %d/%d: %s", i + 1, rounds,
                 ", ".join(f"{name} {train[name][-1]:.0f} ms/step {decode[name][-1]:.2f} ms/token" for name in models))
    for name in models:
        out[name].update(train_step_ms=statistics.median(train[name]), train_step_ms_all=train[name],
                         decode_ms_median=statistics.median(decode[name]), decode_ms_all=decode[name])
    ratios = {"train_step_with_over_without": [a / b for a, b in zip(train["pm_em"], train["none"])],
              "decode_with_over_without": [a / b for a, b in zip(decode["pm_em"], decode["none"])],
              "boundary_share_of_train_step": [1 - a / b for a, b in zip(train["pm_em_one_boundary"], train["pm_em"])]}
    for key, values in ratios.items():
        out[key] = statistics.median(values)
        out[f"{key}_range"] = [min(values), max(values)]
    return out


def compiled_periods_ratio(config: str, context: int, batch: int, repeats: int) -> dict:
    """Training step (forward, loss, backward) of the PM+EM model with its whole plasticity periods eager
    and compiled (`compile_plasticity`), two copies with the same weights timed in turn. The compiled
    copy compiles in the warm-up (its first-step seconds are reported)."""
    eager = build_variant(["--config", config])
    compiled = copy.deepcopy(eager)
    compile_plasticity(compiled)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, eager.backbone.vocab_size, (batch, context + 1), generator=gen)

    def step(model):
        logits, state = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        (loss + sum(state.collect("aux_loss"), loss.new_zeros(()))).backward()
        model.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step(compiled)
    first = time.perf_counter() - start
    medians = time_alternating({"eager": functools.partial(step, eager), "compiled": functools.partial(step, compiled)},
                               repeats)
    return {"config": config, "context": context, "batch": batch, "compile_s": first,
            **{f"{name}_step_ms": 1e3 * t for name, t in medians.items()},
            "eager_over_compiled": medians["eager"] / medians["compiled"]}


def ops_per_period(d: int, period: int = 64, batch: int = 2) -> dict:
    """Aten ops (and non-view ops) of one eager whole period, forward+backward, for a PM and an EM layer
    (`ember.bench.launches`, the counter of `ember bench`'s ops/period column), and their compiled kernels."""
    out = {"d": d, "period": period}
    torch.manual_seed(0)
    for name, memory in (("pm", LowRankPM(d, LearnedNeuromodulator, period=period)),
                         ("em", EpisodicStore(d, LearnedNeuromodulator, period=period))):
        counted = memory_ops_per_period(memory, periods=(4, 8), batch=batch)
        out[f"{name}_ops"], out[f"{name}_non_view_ops"] = counted.ops, counted.non_view
        out[f"{name}_compiled_kernels"] = compiled_period_kernels(memory, d, period, batch)
    return out


def compiled_period_kernels(memory, d: int, period: int, batch: int) -> dict:
    """Kernel launches of one compiled whole period, {forward, backward}, read from the `call` functions of
    the code inductor generates (fused kernels, plus extern and aten calls that inductor leaves to libraries)."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    code_logs = [logging.getLogger(f"torch._inductor.{name}.__output_code") for name in ("graph", "codecache")]
    torch._logging.set_logs(output_code=True)
    saved = [(code_log.handlers, code_log.propagate) for code_log in code_logs]
    for code_log in code_logs:  # a fresh compile logs from graph, a cache hit from codecache
        code_log.handlers, code_log.propagate = [handler], False  # captured, not printed
    try:
        compile_plasticity(memory)
        x = torch.randn(batch, 3 * period, d, requires_grad=True)  # eager first period, then two compiled
        y, state = memory(x)
        (y.sum() + state.aux_loss).backward()
    finally:
        compile_plasticity(memory, enable=False)
        torch._logging.set_logs()
        for code_log, (handlers, propagate) in zip(code_logs, saved):
            code_log.handlers, code_log.propagate = handlers, propagate
    counts = []
    for code in (r for r in records if "def call(" in r):
        body = code.split("def call(", 1)[1].split("\n    return", 1)[0]
        counts.append(sum(len(re.findall(pattern, body)) for pattern in
                          (r"\b(?:cpp|triton)_\w+\.run\(|\bcpp_fused_\w+\(", r"extern_kernels\.\w+\(",
                           r"aten\.\w+\.\w+\(")))
    return dict(zip(("forward", "backward"), counts))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1024, help="scan length")
    p.add_argument("--scan-batch", type=int, default=16, help="scan batch b")
    p.add_argument("--d", type=int, default=128, help="scan channels d (the quickstart width)")
    p.add_argument("--window", type=int, default=64, help="attention window W for the attention ratio")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats (median reported)")
    p.add_argument("--config", default=str(ROOT / "configs/quickstart.yaml"), help="NML config with PM and EM")
    p.add_argument("--overlay", default=str(ROOT / "configs/ablate/no_memory.yaml"), help="overlay removing both")
    p.add_argument("--context", type=int, default=1024, help="tokens per training sequence and decode context")
    p.add_argument("--batch", type=int, default=4, help="training batch")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the memory-overhead comparison: each round "
                   "times one training step and one decode of every variant in turn (median and range reported)")
    p.add_argument("--decode-tokens", type=int, default=32, help="decoded tokens")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0 keeps the default (on a "
                   "shared CPU, 1 avoids thread-synchronization stalls)")
    p.add_argument("--out", type=Path, default=ROOT / "runs/bench/cpu_ratios.json", help="JSON result")
    opts = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    start = time.time()
    result = {"device": f"CPU ({torch.get_num_threads()} threads)", "torch": torch.__version__,
              "scan": scan_ratio(opts.scan_batch, opts.n, opts.d, opts.repeats)}
    log.info("scan at n=%d: %s", opts.n, json.dumps(result["scan"], indent=1))
    result["attention"] = attention_ratio(opts.n, opts.window, opts.repeats)
    log.info("attention at n=%d: %s", opts.n, json.dumps(result["attention"], indent=1))
    result["memory"] = memory_overhead(opts.config, opts.overlay, opts.context, opts.batch, opts.rounds,
                                       opts.decode_tokens)
    result["compiled_periods"] = compiled_periods_ratio(opts.config, opts.context, opts.batch, opts.repeats)
    log.info("compiled plasticity periods: %s", json.dumps(result["compiled_periods"]))
    result["ops_per_period"] = ops_per_period(opts.d)
    log.info("ops per whole plasticity period: %s", json.dumps(result["ops_per_period"]))
    result["wall_s"] = time.time() - start
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=1))
    log.info("%s\nwritten to %s", json.dumps(result, indent=1), opts.out)


if __name__ == "__main__":
    main()
