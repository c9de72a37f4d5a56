#!/usr/bin/env bash
# The memory benchmarks of BENCHMARKS.md: each task trained and tested under its variants with
# `ember ablate` (same data, seed and step budget), one table per task under $OUT_DIR.
#   benchmarks/reproduce/memory_benchmarks.sh [recall|patterns|mqar|forgetting_mqar|all|open_recall_cpu] \
#       [extra `ember ablate` args]
# e.g. a shorter run: benchmarks/reproduce/memory_benchmarks.sh recall --set=--trainer.max_steps=300
# open_recall_cpu is BENCHMARKS 10 (the debug-size model on a CPU, 3 seeds, memories off, no memory, full
# attention); its variants run one after another (about 45 min each on one core): to run them side by side,
# give each process its own --variant list with VARIANTS, e.g. VARIANTS="--variant seed1=,--seed_everything=1"
# OUT_DIR=runs/or1 benchmarks/reproduce/memory_benchmarks.sh open_recall_cpu
set -euo pipefail
EMBER=${EMBER:-ember}
OUT_DIR=${OUT_DIR:-runs/memory_benchmarks}
task=${1:-all}; shift || true
A=configs/ablate
run() {  # name, config, variants...
  local name=$1 config=$2; shift 2
  $EMBER ablate --config "$config" --out "$OUT_DIR/$name" "$@"
}
if [[ $task == recall || $task == all ]]; then
  run recall configs/memory/recall.yaml --variant full= --variant no_memory=$A/no_memory.yaml \
    --variant transformer_full=$A/transformer_full.yaml "$@"
fi
if [[ $task == open_recall_cpu ]]; then
  # 2000 steps of 16 sessions; the transformer has the NML model's 2 layers (the overlay's 4 are for recall.yaml)
  variants=${VARIANTS:-"--variant seed0=,--seed_everything=0 --variant seed1=,--seed_everything=1 \
    --variant seed2=,--seed_everything=2 --variant no_memory=$A/no_memory.yaml \
    --variant transformer_full=$A/transformer_full.yaml,--model.init_args.backbone.init_args.layers=2"}
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} run open_recall_cpu configs/debug/memory_open_recall.yaml $variants \
    --memories_off --set=--trainer.max_steps=2000 --set=--trainer.val_check_interval=250 \
    --set=--data.init_args.val_size=64 --set=--data.init_args.test_size=256 --set=--data.init_args.batch_size=16 \
    --set=--model.init_args.warmup_steps=50 --set=--trainer.enable_progress_bar=false "$@"
fi
if [[ $task == mqar || $task == all ]]; then
  run mqar configs/memory/mqar.yaml --variant nml_em= --variant no_memory=$A/no_memory.yaml \
    --variant transformer_window=$A/transformer_window.yaml "$@"
fi
if [[ $task == patterns || $task == all ]]; then
  run patterns configs/memory/patterns.yaml --variant full= --variant no_pm=$A/no_pm.yaml \
    --variant no_memory=$A/no_memory.yaml "$@"
fi
if [[ $task == forgetting_mqar || $task == all ]]; then
  run forgetting_mqar configs/memory/forgetting_mqar.yaml --variant nml_em= \
    --variant no_memory=$A/no_memory.yaml --variant transformer_window=$A/transformer_window.yaml "$@"
fi
