"""`ember bench` report: ratios against the reference variant, the table, the plot, MLflow.

The table's `ops/period` column is a variant's plasticity launches (`ember.bench.launches`): the non-view
aten ops one eager whole plasticity period dispatches, forward + backward, summed over the model's slot
memories (0: none).

The reference is the transformer measured in the same run: `--reference NAME`, else the first
variant whose backbone is a TransformerBackbone with full attention (window None).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ember.tracking import EmberMLFlowLogger

log = logging.getLogger("ember")
METRICS = ("train_tokens_per_s", "train_step_ms_median", "train_peak_mem_bytes", "decode_ms_median",
           "decode_tokens_per_s", "state_bytes")


def pick_reference(variants: dict[str, dict], name: str | None = None) -> str | None:
    """The variant ratios are taken against: `name` if measured, else the first full-attention transformer."""
    if name is not None:
        return name if name in variants else None
    for variant, info in variants.items():
        if info["backbone"] == "TransformerBackbone" and info["window"] is None:
            return variant
    return None


def add_ratios(rows: list[dict], reference: str | None):
    """Set train_vs_ref, decode_vs_ref (throughput ratios, > 1 = faster than the reference) and
    mem_vs_ref (peak training memory ratio) on every row whose context the reference measured."""
    ref = {r["context"]: r for r in rows if r["variant"] == reference}
    for row in rows:
        other = ref.get(row["context"], {})
        for key, metric in (("train_vs_ref", "train_tokens_per_s"), ("decode_vs_ref", "decode_tokens_per_s"),
                            ("mem_vs_ref", "train_peak_mem_bytes")):
            mine, theirs = row.get(metric), other.get(metric)
            row[key] = mine / theirs if mine is not None and theirs else None


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown_table(result: dict) -> str:
    """One row per (variant, context); skipped measurements read `skipped: <reason>`. A note under the table
    says what ops/period counts."""
    ref = result.get("reference")
    meta = result["meta"]
    lines = [f"device: {meta['device']}, dtype {meta['dtype']}, compile {meta['compile']} "
             f"(plasticity periods: {meta.get('compile_periods') or 'eager'}), batch {meta['batch']}, "
             f"{meta['steps']} timed steps after {meta['warmup']}, {meta['decode_tokens']} decoded tokens; "
             f"peak memory: {meta['peak_mem_method']}; ratios vs {ref or '(no transformer in this run)'}", "",
             "| variant | context | train tok/s | vs ref | peak mem (train) | decode ms/token | decode tok/s "
             "| vs ref | state/stream | params | ops/period |", "|---" * 11 + "|"]
    for r in result["rows"]:
        train = r.get("train_skipped") and f"skipped: {r['train_skipped']}"
        decode = r.get("decode_skipped") and f"skipped: {r['decode_skipped']}"
        lines.append(" | ".join([
            f"| {r['variant']}", str(r["context"]), train or _num(r.get("train_tokens_per_s"), ",.0f"),
            _num(r.get("train_vs_ref"), ".2f"), "" if train else human_bytes(r.get("train_peak_mem_bytes")),
            decode or _num(r.get("decode_ms_median"), ".2f"), "" if decode else _num(r.get("decode_tokens_per_s"),
                                                                                    ",.0f"),
            _num(r.get("decode_vs_ref"), ".2f"), human_bytes(r.get("state_bytes")),
            f"{r['params'] / 1e6:.2f}M", f"{_num(r.get('ops_per_period'), ',.0f')} |"]))
    lines += ["", "ops/period: non-view aten ops (kernel launches on a GPU) one whole plasticity period dispatches "
              "eagerly, forward + backward, summed over the model's slot memories (0: none); counted uncompiled "
              "whatever --compile-periods says"]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    """Four panels against context length, one line per variant: training tokens/s, training peak
    memory, decode ms/token and state bytes per stream. Saved as PNG."""
    import matplotlib  # deferred: a second to import, and only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred, as matplotlib above

    panels = [("train_tokens_per_s", "training tokens/s"), ("train_peak_mem_bytes", "training peak memory (MiB)"),
              ("decode_ms_median", "decode ms/token (median)"), ("state_bytes", "state per stream (MiB)")]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (key, title) in zip(axes.flat, panels):
        scale = 1 / 2**20 if key.endswith("bytes") else 1.0
        for variant in result["variants"]:
            points = [(r["context"], r[key] * scale) for r in result["rows"]
                      if r["variant"] == variant and r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=variant)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context (tokens)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    meta = result["meta"]
    fig.suptitle(f"ember bench: {meta['device']}, {meta['dtype']}, batch {meta['batch']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def log_to_mlflow(result: dict, files: list[Path], run_dir: str = "runs", tracking_uri: str | None = None,
                  run_name: str | None = None) -> str:
    """Log the settings as params, every measurement as a metric (step = context) and the files as
    artifacts under `bench/` of a new run in the experiment `bench`; returns the run id."""
    logger = EmberMLFlowLogger(experiment_name="bench", run_name=run_name, run_dir=run_dir,
                               tracking_uri=tracking_uri, log_model=False)
    meta = result["meta"]
    logger.log_hyperparams({k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))})
    logger.log_hyperparams({f"{name}.{key}": info[key] for name, info in result["variants"].items()
                            for key in ("params", "ops_per_period") if info.get(key) is not None})
    for row in result["rows"]:
        metrics = {f"bench/{row['variant']}/{key}": float(row[key]) for key in (*METRICS, "train_vs_ref")
                   if row.get(key) is not None}
        logger.log_metrics(metrics, step=row["context"])
    for path in files:
        logger.experiment.log_artifact(logger.run_id, str(path), "bench")
    logger.finalize("success")
    return logger.run_id
