#!/usr/bin/env bash
# The memory benchmarks of BENCHMARKS.md: each task trained and tested under its variants with
# `ember ablate` (same data, seed and step budget), one table per task under $OUT_DIR.
#   benchmarks/reproduce/memory_benchmarks.sh [recall|patterns|mqar|forgetting_mqar|all] [extra `ember ablate` args]
# e.g. a shorter run: benchmarks/reproduce/memory_benchmarks.sh recall --set=--trainer.max_steps=300
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
