"""`ember bench` command line: parse the options, run the benchmark, log the table, write the files.

    ember bench --config configs/bench/*.yaml                      the issue-6 comparison (GPU)
    ember bench --config configs/debug/bench_nml.yaml --contexts 64,128 --steps 2
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from jsonargparse import ArgumentParser

from ember.bench.measure import BenchOptions, parse_contexts
from ember.bench.report import log_to_mlflow, plot
from ember.bench.run import collect_variants, run_bench
from ember.errors import EmberConfigError

log = logging.getLogger("ember")
DESCRIPTION = """Measure training tokens/s (forward + backward + AdamW, median of timed steps after warm-up,
device-synchronized), peak training memory, decode latency and tokens/s of one stream as its context
grows, the bytes of per-stream state, and the plasticity loop's launches (ops/period: the non-view aten
ops one eager whole plasticity period dispatches, forward + backward, summed over the model's slot
memories; 0 without memories), for each configured model on this device. Logs a table,
writes bench.json, bench.md and bench.png to --out, and logs them to an MLflow run (experiment
`bench`). Ratios are taken against the full-attention transformer of the same run."""


def bench_parser() -> ArgumentParser:
    p = ArgumentParser(prog="ember bench", description=DESCRIPTION)
    p.add_argument("--config", action="extend", nargs="+", default=[], metavar="CONFIG",
                   help="model config(s): each file is one variant named after it (files are not stacked; "
                        "stack with --variant)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=CONFIG[,OVERLAY|,--key=value]",
                   help="a variant from stacked configs and dotted overrides, as in `ember ablate` (repeat)")
    p.add_argument("--set", action="append", default=[], metavar="--key=value",
                   help="an override for every variant, e.g. --set=--model.init_args.backbone.init_args.d_model=64")
    p.add_argument("--contexts", type=str, default="2048,8192,16384", help="context lengths in tokens, comma-separated")
    p.add_argument("--batch", type=int, default=1, help="sequences per training step")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per context (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first (compilation, allocator)")
    p.add_argument("--decode-tokens", dest="decode_tokens", type=int, default=32,
                   help="bytes decoded one at a time at each context (median latency reported)")
    p.add_argument("--prefill-chunk", dest="prefill_chunk", type=int, default=2048,
                   help="tokens per forward call when prefilling a stream before decoding")
    p.add_argument("--device", type=Literal["auto", "cpu", "cuda"], default="auto",
                   help="auto: cuda when visible, else cpu")
    p.add_argument("--dtype", type=Literal["auto", "float32", "bfloat16"], default="auto",
                   help="auto: bfloat16 autocast on cuda, float32 on cpu")
    p.add_argument("--compile", type=Literal["auto", "true", "false"], default="auto",
                   help="torch.compile the training step's model; auto: on cuda only (decoding stays eager)")
    p.add_argument("--compile-periods", dest="compile_periods",
                   type=Literal["auto", "eager", "default", "reduce-overhead", "max-autotune"], default="auto",
                   help="the memories' whole plasticity periods (ember.ops.slot_memory.compile_plasticity): eager, or "
                        "compiled in this torch.compile mode (reduce-overhead: CUDA graphs); auto: 'default' when "
                        "--compile is on, else eager")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU intra-op threads (torch.set_num_threads); 0 keeps torch's default. On a CPU shared "
                        "with other work, 1 avoids thread-synchronization stalls that swamp small operations")
    p.add_argument("--reference", type=str, default=None,
                   help="variant the ratios are taken against (default: the first full-attention transformer)")
    p.add_argument("--out", type=str, default="runs/bench", help="folder for bench.json, bench.md and bench.png")
    p.add_argument("--mlflow", type=bool, default=True, help="log the files and numbers to an MLflow run")
    p.add_argument("--run_dir", type=str, default="runs", help="MLflow store folder (sqlite at <run_dir>/mlflow.db)")
    p.add_argument("--note", type=str, default="", help="free text recorded with the results, e.g. 'CPU shared'")
    return p


def _check_counts(args):
    for name in ("batch", "steps", "decode_tokens", "prefill_chunk"):
        if getattr(args, name) < 1:
            raise EmberConfigError(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    if args.threads < 0:
        raise EmberConfigError(f"--threads={args.threads} must be >= 0 (0 keeps torch's default)")
    if args.warmup < 0:
        raise EmberConfigError(f"--warmup={args.warmup} must be >= 0")


def main(argv: list[str]) -> int:
    args = bench_parser().parse_args(argv)
    _check_counts(args)
    contexts = parse_contexts(args.contexts)  # fail on a bad list before building any model

    extra = [a for item in args.set for a in item.split("=", 1)]
    variants = collect_variants(list(args.config), list(args.variant), extra)
    opts = BenchOptions(contexts=contexts, batch=args.batch, steps=args.steps, warmup=args.warmup,
                        decode_tokens=args.decode_tokens, prefill_chunk=args.prefill_chunk, device=args.device,
                        dtype=args.dtype, compile=args.compile, compile_periods=args.compile_periods)
    opts.resolved_device()  # a missing CUDA device fails here, with the fix
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    result = run_bench(variants, opts, args.out, args.reference, args.note)
    out = Path(args.out)
    files = [out / "bench.json", out / "bench.md", plot(result, out / "bench.png")]
    log.info("bench: results in %s\n%s", out, (out / "bench.md").read_text())
    if args.mlflow:
        run_id = log_to_mlflow(result, files, args.run_dir)
        log.info("bench: MLflow run %s (experiment bench, store %s/mlflow.db)", run_id, args.run_dir)
    return 0
