"""NMLBackbone vs TransformerBackbone at equal parameters and steps on tiny shakespeare.

Trains each backbone with `ember fit` (same data, seed, schedule, steps), then evaluates its
best checkpoint on the *whole* validation split with `ember validate`, and prints a markdown
table (validation loss in nats per byte = nats/char, and bits per byte) with the command,
device, date and commit to paste into BENCHMARKS.md. Results are also written as JSON.

Equal parameters: an NML layer holds ~16 d^2 weights (scan 4, attention 4, SwiGLU 8) and a
transformer layer ~12 d^2, so NML with 3 layers matches a 4-layer transformer at the same width.

    python benchmarks/reproduce/compare_backbones.py --steps 800 --d_model 128
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import torch

from ember.files import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/reproduce/ -> the repository root
CONFIG = ROOT / "configs/backbone/shakespeare.yaml"
OVERLAY = ROOT / "configs/ablate/transformer.yaml"


def variants(nml_layers: int, transformer_layers: int) -> dict[str, list[str]]:
    b = "--model.init_args.backbone.init_args."
    return {
        f"NMLBackbone (L={nml_layers})": ["--config", str(CONFIG), f"{b}layers_per_block", str(nml_layers)],
        f"TransformerBackbone ({transformer_layers} layers)": [
            "--config", str(CONFIG), "--config", str(OVERLAY), f"{b}layers", str(transformer_layers)],
    }


def run(args: list[str], log_file: Path):
    with open(log_file, "a") as log:
        done = subprocess.run([sys.executable, "-m", "ember.cli", *args], cwd=ROOT, stdout=log, stderr=log)
    if done.returncode:
        raise SystemExit(f"`ember {' '.join(args)}` failed: see {log_file}")


def last_metric(run_dir: Path, key: str) -> float:
    with sqlite3.connect(run_dir / "mlflow.db") as db:
        (value,) = db.execute("select m.value from metrics m join runs r on m.run_uuid = r.run_uuid "
                              "where m.key = ? order by r.start_time desc, m.step desc limit 1", (key,)).fetchone()
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800, help="optimizer steps per model")
    parser.add_argument("--d_model", type=int, default=128, help="width of both backbones")
    parser.add_argument("--heads", type=int, default=4, help="attention heads of both backbones")
    parser.add_argument("--nml_layers", type=int, default=3, help="NML layers (16 d^2 each)")
    parser.add_argument("--transformer_layers", type=int, default=4, help="transformer layers (12 d^2 each)")
    parser.add_argument("--batch_size", type=int, default=32, help="sequences of 256 bytes per step")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout of both backbones")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    parser.add_argument("--precision", default=None, help="trainer precision (default: the config's on GPU, 32 on CPU)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench-backbones", help="run folder")
    opts = parser.parse_args()

    device = torch.cuda.get_device_name() if torch.cuda.is_available() and opts.accelerator != "cpu" else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    precision = opts.precision or ("bf16-mixed" if "CPU" not in device else "32")
    b = "--model.init_args.backbone.init_args."
    common = [f"{b}d_model", str(opts.d_model), f"{b}heads", str(opts.heads), f"{b}dropout", str(opts.dropout),
              "--trainer.max_steps", str(opts.steps), "--trainer.val_check_interval", str(max(1, opts.steps // 4)),
              "--trainer.accelerator", opts.accelerator, "--trainer.precision", precision,
              "--data.init_args.batch_size", str(opts.batch_size), "--trainer.enable_progress_bar", "false"]
    rows = []
    for name, config in variants(opts.nml_layers, opts.transformer_layers).items():
        run_dir = opts.out / name.split()[0]
        log_file = opts.out / f"{name.split()[0]}.log"
        run_dir.mkdir(parents=True, exist_ok=True)
        start = time.time()
        run(["fit", *config, *common, "--trainer.logger.init_args.run_dir", str(run_dir)], log_file)
        minutes = (time.time() - start) / 60
        (folder,) = [p.parent for p in run_dir.glob("*/*/checkpoints")]
        best = folder / "checkpoints/best.ckpt"
        run(["validate", "--config", str(folder / "config.yaml"), "--ckpt_path", str(best),
             "--data.init_args.max_eval_windows", "null", "--trainer.limit_val_batches", "1.0",
             "--trainer.logger.init_args.run_dir", str(run_dir)], log_file)
        params = sum(v.numel() for k, v in load_checkpoint(best)["state_dict"].items())
        loss = last_metric(run_dir, "val/loss")
        rows.append({"model": name, "params": params, "val_loss_nats": loss, "val_bpb": loss / 0.6931471805599453,
                     "train_minutes": minutes})
        print(f"{name}: {params / 1e6:.2f}M params, val loss {loss:.4f} nats/byte, {minutes:.1f} min", flush=True)

    report(opts, device, rows)


def report(opts: argparse.Namespace, device: str, rows: list[dict]):
    """results.json in the run folder, and the table printed as markdown."""
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    commit = git.stdout.strip()
    meta = {"date": datetime.date.today().isoformat(), "commit": commit, "device": device, "steps": opts.steps,
            "batch": f"{opts.batch_size} x 256 bytes", "command": "python " + " ".join(sys.argv)}
    (opts.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\n{meta}\n")
    print("| model | params | val loss (nats/byte) | val bits/byte | train time |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['val_loss_nats']:.4f} | {r['val_bpb']:.3f} | "
              f"{r['train_minutes']:.1f} min |")


if __name__ == "__main__":
    main()
