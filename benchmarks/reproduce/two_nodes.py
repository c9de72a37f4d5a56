"""A 2-node job on one machine (loopback): loss against one process at the same global batch, wall time, and a
preemption with its resume (BENCHMARKS section 13).

Writes the built-in corpus as text shards, serves them over loopback HTTP, and runs `ember fit` on a config:
  - 2 nodes x 1 process (NODE_RANK 0/1, gloo), reading the shards' URL;
  - 1 process with twice the batch (the same global batch), reading the shard folder;
  - the 2-node job again, each node sent SIGUSR1 (SLURM's preemption warning) after its first checkpoint, then
    resumed with --ckpt_path: its final weights against the uninterrupted 2-node run's.
Prints a markdown table with the command, device, date and commit; writes OUT/two_nodes.json. Runs go to OUT/.

    python benchmarks/reproduce/two_nodes.py --out two_nodes --steps 300
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import torch

from ember.data_modules.corpus import builtin_corpus
from ember.data_modules.shards import prepare_text_shards

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the shards, runs and JSON")
    parser.add_argument("--config", default=str(ROOT / "configs/debug/quickstart.yaml"), help="the config to fit")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps of each fit")
    parser.add_argument("--val_every", type=int, default=100, help="validation (and last.ckpt) every N steps")
    parser.add_argument("--batch_size", type=int, default=8, help="per-process batch; one process takes twice it")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """A folder over loopback HTTP (a daemon thread) while the block runs: `with Serve(folder) as url:`."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # no line per request
            pass

    def __init__(self, folder: Path):
        handler = functools.partial(self.Quiet, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def fit_argv(args, runs: Path, data: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ember.cli.main", "fit", "--config", args.config, "--data.init_args.path", data,
            "--trainer.max_steps", str(args.steps), "--trainer.val_check_interval", str(args.val_every),
            "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.run_dir", str(runs), *extra]


def two_nodes(args, runs: Path, data: str, *extra: str, stop_after_first_checkpoint: bool = False) -> dict:
    """Both nodes' processes; with stop_after_first_checkpoint, SIGUSR1 to each once last.ckpt exists."""
    argv = fit_argv(args, runs, data, "--trainer.strategy", "ddp", "--trainer.num_nodes", "2",
                    "--trainer.devices", "1", *extra)
    port, procs, start = free_port(), [], time.monotonic()
    for node in (0, 1):
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "NODE_RANK": str(node)}
        with open(runs.parent / f"{runs.name}.node{node}.log", "a") as log:
            procs.append(subprocess.Popen(argv, cwd=args.out, env=env, stdout=log, stderr=subprocess.STDOUT))
    if stop_after_first_checkpoint:
        while not list(runs.glob("*/*/checkpoints/last.ckpt")) and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        for p in procs:
            p.send_signal(signal.SIGUSR1)
    codes = [p.wait() for p in procs]
    return {"codes": codes, "wall_s": time.monotonic() - start}


def one_process(args, runs: Path, data: str) -> dict:
    start = time.monotonic()
    with open(runs.parent / f"{runs.name}.log", "a") as log:
        code = subprocess.run(fit_argv(args, runs, data, "--data.init_args.batch_size", str(2 * args.batch_size)),
                              cwd=args.out, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)}, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    return {"codes": [code], "wall_s": time.monotonic() - start}


def last_checkpoint(runs: Path) -> Path:
    (path,) = runs.glob("*/*/checkpoints/last.ckpt")
    return path


def final_val_bpb(runs: Path) -> float:
    with sqlite3.connect(runs / "mlflow.db") as db:
        (value,) = db.execute("select value from metrics where key = 'val/bpb' order by step desc limit 1").fetchone()
    return value


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"error: --out {args.out} is not empty: name a new folder")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "corpus.txt").write_bytes(builtin_corpus())
    shards = args.out / "shards"
    prepare_text_shards([args.out / "corpus.txt"], shards, chunk_bytes=4096, shard_bytes=1 << 18)
    per = ["--data.init_args.batch_size", str(args.batch_size)]
    results = {}
    with Serve(shards) as url:
        print(f"2 nodes x 1 process on {url} ...", flush=True)
        results["2 nodes x 1 process (shards over HTTP)"] = two_nodes(args, args.out / "nodes", url, *per)
        print("1 process, twice the batch ...", flush=True)
        results["1 process, batch x2 (shard folder)"] = one_process(args, args.out / "single", str(shards))
        print("2 nodes, SIGUSR1 after the first checkpoint ...", flush=True)
        stopped = two_nodes(args, args.out / "preempted", url, *per, stop_after_first_checkpoint=True)
        at = torch.load(last_checkpoint(args.out / "preempted"), weights_only=False)["global_step"]
        print(f"stopped at step {at} (exit {stopped['codes']}); resuming ...", flush=True)
        resumed = two_nodes(args, args.out / "preempted", url, *per, "--ckpt_path",
                            str(last_checkpoint(args.out / "preempted")))
    for name, runs in zip(results, ("nodes", "single")):
        results[name]["val_bpb"] = final_val_bpb(args.out / runs)
    whole = torch.load(last_checkpoint(args.out / "nodes"), weights_only=False)
    again = torch.load(last_checkpoint(args.out / "preempted"), weights_only=False)
    diff = max((whole["state_dict"][k] - again["state_dict"][k]).abs().max().item() for k in whole["state_dict"])
    resume = {"stopped_codes": stopped["codes"], "stopped_at": at, "resumed_codes": resumed["codes"],
              "final_step": again["global_step"], "max_abs_weight_diff": diff}
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"\n`python benchmarks/reproduce/two_nodes.py {' '.join(sys.argv[1:] if argv is None else argv)}`; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{date.today()}, commit {commit}\n")
    print("| run | exit | wall time (s) | final val bpb |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['codes']} | {r['wall_s']:.1f} | {r['val_bpb']:.4f} |")
    print(f"\npreempted 2-node run: SIGUSR1 at step {at}, exit {stopped['codes']}; resumed to step "
          f"{again['global_step']} (exit {resumed['codes']}); largest weight difference from the uninterrupted "
          f"run: {diff:.3g}")
    (args.out / "two_nodes.json").write_text(json.dumps({"runs": results, "resume": resume}, indent=2))
    ok = all(c == 0 for r in results.values() for c in r["codes"]) and resumed["codes"] == [0, 0]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
