"""`ember bench` driver: build each variant's model, measure it at every context, write the report.

A variant is a name and the CLI arguments that build its config: `--config C` (repeat) gives
one variant per file, named after it; `--variant NAME=CONFIG[,OVERLAY...][,--key=value]` stacks
configs and overrides as `ember ablate` does. `--set --key=value` applies to every variant.
"""

from __future__ import annotations

import datetime
import json
import logging
import platform
import subprocess
import sys
import warnings
from pathlib import Path

import torch

from ember import registry
from ember.bench.launches import ops_per_period
from ember.bench.measure import BenchOptions, measure_decode, measure_training_or_skip
from ember.bench.memory import cpu_peak_method, free_device_memory
from ember.bench.report import add_ratios, markdown_table, pick_reference
from ember.cli.ablate import parse_variant
from ember.cli.checks import check_config_names
from ember.cli.lightning import EmberCLI
from ember.errors import EmberConfigError
from ember.files import atomic_write_text
from ember.ops.attention import WindowAttention
from ember.ops.slot_memory import compile_plasticity

log = logging.getLogger("ember")
# The trainer of a config is built but never used: keep it on the CPU so GPU configs build anywhere.
TRAINER_STAND_IN = ["--trainer.logger", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
                    "--trainer.strategy", "auto", "--trainer.num_nodes", "1"]


def collect_variants(configs: list[str], variants: list[str], extra: list[str]) -> list[tuple[str, list[str]]]:
    """(name, CLI args) per variant: one per --config file, then one per --variant spec."""
    out: list[tuple[str, list[str]]] = []
    for config in configs:
        if not Path(config).is_file():
            raise EmberConfigError(f"--config {config} is not a file (paths are relative to {Path.cwd()})")
        out.append((Path(config).stem, ["--config", config]))
    for spec in variants:
        name, args = parse_variant(spec)
        if "--config" not in args:
            raise EmberConfigError(f"--variant {spec!r} names no config: write NAME=CONFIG[,OVERLAY...][,--key=value]")
        out.append((name, args))
    if not out:
        raise EmberConfigError("ember bench needs a model: --config C (repeat for several) or --variant NAME=C,...")
    names = [n for n, _ in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EmberConfigError(f"variant name(s) {duplicates} appear twice: name them with --variant NAME=CONFIG")
    return [(name, [*args, *extra]) for name, args in out]


def build_variant(args: list[str]):
    """The EmberModel of a variant's config stack (on the CPU; no logger, no run)."""
    registry.load_plugins()
    check_config_names(args)
    with warnings.catch_warnings():  # `ember bench ...` is in sys.argv: LightningCLI warns that args also came
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        return EmberCLI(args=[*args, *TRAINER_STAND_IN], run=False).model


def _describe(model) -> dict:
    """Backbone class, width, attention window (None: full causal attention) and parameter count."""
    windows = [m.window for m in model.modules() if isinstance(m, WindowAttention)]
    return {"backbone": type(model.backbone).__name__, "d_model": model.backbone.d_model,
            "window": windows[0] if windows else None, "params": sum(p.numel() for p in model.parameters())}


def measure_variant(name: str, args: list[str], opts: BenchOptions) -> tuple[dict, list[dict]]:
    """Build one variant, count its plasticity launches per period, measure training at each context and
    decoding as the context grows."""
    device = opts.resolved_device()
    model = build_variant(args).to(device)
    # eager non-view ops of one whole period of every slot memory, forward + backward (0: no memories)
    launches = ops_per_period(model, dtype=opts.resolved_dtype()).non_view
    info = {**_describe(model), "ops_per_period": launches, "args": args}
    forward = torch.compile(model) if opts.resolved_compile() else None
    periods = opts.resolved_compile_periods()  # the compiled model leaves the plasticity loop eager
    if periods is not None:
        compile_plasticity(model, mode=periods)
    log.info("bench: %s: %s, %.2fM parameters, %.0f plasticity ops per period, on %s", name, info["backbone"],
             info["params"] / 1e6, launches, device)
    rows = []
    for context in opts.contexts:
        train = measure_training_or_skip(model, context, opts, forward)
        rows.append({"variant": name, "context": context, "params": info["params"], "ops_per_period": launches,
                     **{f"train_{k}": v for k, v in train.items()}})
        log.info("bench: %s n=%d train: %s", name, context, train.get("skipped") or
                 f"{train['tokens_per_s']:.0f} tok/s, {train['step_ms_median']:.1f} ms/step")
    decode = measure_decode(model, opts.contexts, opts.decode_tokens, opts.resolved_dtype(), opts.prefill_chunk,
                            min(opts.warmup, 2) if opts.warmup else 0, opts.seed)
    for row in rows:
        row.update({"decode_skipped" if k == "skipped" else k: v for k, v in decode[row["context"]].items()})
    model.to("cpu")
    del model, forward
    free_device_memory(device)
    return info, rows


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _meta(opts: BenchOptions, note: str) -> dict:
    device = opts.resolved_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": _commit(), "device": name,
            "torch": torch.__version__, "dtype": str(opts.resolved_dtype()).replace("torch.", ""),
            "compile": opts.resolved_compile(), "compile_periods": opts.resolved_compile_periods(),
            "contexts": opts.contexts, "batch": opts.batch, "steps": opts.steps,
            "warmup": opts.warmup, "decode_tokens": opts.decode_tokens, "prefill_chunk": opts.prefill_chunk,
            "peak_mem_method": "cuda: max_memory_allocated" if device.type == "cuda" else cpu_peak_method(),
            "command": "ember bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "", "note": note}


def run_bench(variants: list[tuple[str, list[str]]], opts: BenchOptions, out: str, reference: str | None = None,
              note: str = "") -> dict:
    """Measure every variant; write <out>/bench.json after each (a crash keeps the finished ones) and the table."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"meta": _meta(opts, note), "variants": {}, "rows": [], "reference": None}
    for name, args in variants:
        info, rows = measure_variant(name, args, opts)
        result["variants"][name] = info
        result["rows"] += rows
        result["reference"] = pick_reference(result["variants"], reference)
        add_ratios(result["rows"], result["reference"])
        atomic_write_text(out_dir / "bench.json", json.dumps(result, indent=1))
    if reference is not None and result["reference"] != reference:
        log.warning("bench: --reference %s is not a variant of this run; ratios are left out", reference)
    atomic_write_text(out_dir / "bench.md", markdown_table(result))
    return result
