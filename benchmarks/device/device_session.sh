#!/usr/bin/env bash
# One command for a GPU session (nvidia-h200: Python 3.12, torch 2.11, no network); see benchmarks/device/DEVICE.md.
#
#   bash benchmarks/device/device_session.sh TASK [TASK ...]      e.g. `check bench`, `sudoku`, `maze`
#     check   nvidia-smi, versions and imports, a 2-step `ember fit` of configs/debug/sudoku.yaml (~1 min)
#     bench   ember bench --config configs/bench/*.yaml --contexts 2048,8192,16384 (bench.json after each variant)
#     sudoku  ember fit configs/reasoning/sudoku.yaml for a wall-clock budget, then ember test on the hard tdoku set
#     maze    ember fit configs/reasoning/maze.yaml on Maze-Hard train.csv, then ember test on Maze-Hard test.csv
#     setup   only the install below (also the first thing every other task does)
#
# Prepared beforehand with `bash benchmarks/device/device_wheels.sh --data`: .whl/ (wheels of what the image lacks) and
# .devdata/ (the first lines of ../shared/data's eval files, since ../shared does not travel); the `run` tool's
# call names both in carry: [".whl", ".devdata"]. Setup installs .whl/*.whl into $SITE (plus a .whl/fallback/
# wheel for each package the image has at a version a carried package refuses), and lays out the ember package
# in $EMBER_SRC as setuptools' package-dir maps it (ember.plugins -> plugins/, ...) with symbolic links, so
# nothing is built or pip-installed. PYTHONSAFEPATH=1 keeps the repo's own ember/ folder (the current directory)
# off sys.path: there `import ember` would find ember/ without its plugins, data_modules and callbacks.
#
# Results and logs go to $OUT (default runs/device_out): summary.md, logs/*.log, bench/, sudoku/, maze/.
# Run folders with checkpoints stay in $RUNS (default /tmp/ember_runs); COPY_CKPT=1 copies best/last.ckpt to $OUT.
# Time: every step gets min(its own limit, what is left of SESSION_SECONDS, default 570: the run tool's 600 less
# a margin). Environment (defaults): ACCEL (gpu; cpu for a local dry run), PYTHON (python3), WHEELS (auto: install
# when .whl/ exists and PYTHON is 3.12; yes; no), CHECK_TIMEOUT (150), BENCH_CONFIGS (configs/bench/*.yaml),
# BENCH_CONTEXTS (2048,8192,16384), BENCH_STEPS (5), BENCH_TIMEOUT (540), BENCH_ARGS (), FIT_SECONDS (auto: what
# is left less FIT_SLACK and TEST_TIMEOUT, at most 420), FIT_SLACK (120: data, compile, sanity check outside
# max_time's clock), VAL_EVERY (250 steps), TEST_TIMEOUT (90), SUDOKU_EVAL_LIMIT (1000), MAZE_TRAIN (hard: train
# on .devdata's Maze-Hard train.csv; generated), FIT_ARGS / TEST_ARGS (extra options, word-split), SUDOKU_CONFIG /
# MAZE_CONFIG (configs/reasoning/*.yaml), SKIP_FIT (0; 1: only test the newest run already in $RUNS/<task>).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root (this script is in benchmarks/device/)
ROOT=$PWD
(( $# )) || set -- check
for task in "$@"; do
  case "$task" in check|bench|sudoku|maze|setup) ;; *) echo "unknown task $task" >&2; sed -n '3,9p' "$0" >&2; exit 2 ;; esac
done
START=$(date +%s)
DEADLINE=$(( START + ${SESSION_SECONDS:-570} ))
OUT=${OUT:-runs/device_out}
mkdir -p "$OUT/logs" && OUT=$(cd "$OUT" && pwd)
PYTHON=$(command -v "${PYTHON:-python3}")
ACCEL=${ACCEL:-gpu}
SITE=${SITE:-/tmp/site}
EMBER_SRC=${EMBER_SRC:-/tmp/ember_src}
RUNS=${RUNS:-/tmp/ember_runs}
export PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1 GIT_PYTHON_REFRESH=quiet PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
SUMMARY=()   # "step|status|seconds|note"

log() { echo "[device_session $(( $(date +%s) - START ))s] $*"; }
left() { echo $(( DEADLINE - $(date +%s) )); }
limit() { local l; l=$(( $(left) - 10 )); (( $1 < l )) && echo "$1" || echo "$l"; }  # min(want, time left - 10)

# step NAME SECONDS CMD...: run CMD under timeout, output to the console and $OUT/logs/NAME.log; record the result
step() {
  local name=$1 want=$2 t0 rc secs note=""
  shift 2
  local t; t=$(limit "$want")
  if (( t < 20 )); then SUMMARY+=("$name|skipped|0|no time left"); log "skip $name: no time left"; return 1; fi
  log "$name (limit ${t}s): $*"
  t0=$(date +%s)
  set +e
  timeout -k 10 "$t" "$@" 2>&1 | tee "$OUT/logs/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  secs=$(( $(date +%s) - t0 ))
  if (( rc == 124 || rc == 137 )); then note="timed out at ${t}s"; fi
  SUMMARY+=("$name|$( ((rc == 0)) && echo ok || echo "rc=$rc")|$secs|$note")
  return "$rc"
}

# ---- setup: wheels, the ember layout, the `ember` command ---------------------------------------------------
install_wheels() {
  local want=${WHEELS:-auto} v
  v=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [[ "$want" == auto ]]; then
    if compgen -G ".whl/*.whl" > /dev/null && [[ "$v" == 3.12 ]]; then want=yes; else want=no; fi
  fi
  if [[ "$want" != yes ]]; then log "wheels: not installed (WHEELS=${WHEELS:-auto}, Python $v)"; return 0; fi
  local stamp; stamp=$(ls -l .whl/*.whl .whl/fallback/ 2>/dev/null | md5sum | cut -c1-32)
  if [[ -f "$SITE/.ember_wheels" && "$(cat "$SITE/.ember_wheels")" == "$stamp" ]]; then
    log "wheels: already in $SITE"; return 0
  fi
  local pip=("$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE")
  "${pip[@]}" .whl/*.whl
  if [[ -d .whl/fallback ]]; then
    local extra
    mapfile -t extra < <(PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" benchmarks/device/device_deps.py \
      requirements "$SITE" --wheels-from .whl/fallback)
    if (( ${#extra[@]} )); then log "wheels: fallback for the image's too-old copies: ${extra[*]##*/}"; "${pip[@]}" "${extra[@]}"; fi
  fi
  echo "$stamp" > "$SITE/.ember_wheels"
}

make_tree() {  # $EMBER_SRC/ember: links to ember/*, and ember.X -> its folder from pyproject's package-dir
  if [[ -e "$EMBER_SRC" && ! -e "$EMBER_SRC/.ember_tree" ]]; then
    echo "$EMBER_SRC exists and is not an ember tree made here; set EMBER_SRC" >&2; exit 1
  fi
  rm -rf "$EMBER_SRC" && mkdir -p "$EMBER_SRC/ember" "$EMBER_SRC/bin" && touch "$EMBER_SRC/.ember_tree"
  local name dir
  while read -r name dir; do
    if [[ "$name" == ember ]]; then
      for f in "$ROOT/$dir"/*; do [[ "${f##*/}" == __pycache__ ]] || ln -s "$f" "$EMBER_SRC/ember/"; done
    else
      ln -s "$ROOT/$dir" "$EMBER_SRC/${name//.//}"
    fi
  done < <("$PYTHON" - <<'EOF'
import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    sys.exit("Python >= 3.11 needed to read pyproject.toml")
mapping = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"]
assert mapping.get("ember") == "ember", mapping
for name, folder in sorted(mapping.items(), key=lambda kv: kv[0].count(".")):
    assert name == "ember" or (name.count(".") == 1 and name.startswith("ember.")), name
    print(name, folder)
EOF
)
  printf '#!/bin/sh\nexec "%s" -c "import sys; sys.argv[0] = \\"ember\\"; from ember.cli.main import run; run()" "$@"\n' \
    "$PYTHON" > "$EMBER_SRC/bin/ember"
  chmod +x "$EMBER_SRC/bin/ember"
}

setup() {
  local t0; t0=$(date +%s)
  install_wheels
  make_tree
  export PYTHONPATH="$EMBER_SRC:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$EMBER_SRC/bin:$PATH"
  "$PYTHON" benchmarks/device/device_deps.py requirements "$SITE" | tee "$OUT/logs/requirements.log"
  SUMMARY+=("setup|ok|$(( $(date +%s) - t0 ))|PYTHONPATH=$PYTHONPATH")
}

# ---- helpers for the fit/test tasks --------------------------------------------------------------------------
metrics_json() {  # metrics_json RUN_DIR FILE: the latest value of every metric in RUN_DIR/mlflow.db, as JSON
  "$PYTHON" - "$1" "$2" <<'EOF'
import json, sqlite3, sys
from pathlib import Path
db = Path(sys.argv[1], "mlflow.db")
out = {}
if db.exists():
    con = sqlite3.connect(db)
    for key, value, step in con.execute("select key, value, step from latest_metrics order by key"):
        out[key] = {"value": value, "step": step}
Path(sys.argv[2]).write_text(json.dumps(out, indent=1))
keys = [k for k in out if k.startswith(("test/", "val/exact", "val/loss", "train/exact"))]
print("  " + "\n  ".join(f"{k} = {out[k]['value']:.4f} (step {out[k]['step']})" for k in keys) if keys else "  no metrics")
EOF
}

hms() { printf '00:%02d:%02d:%02d' $(( $1 / 3600 )) $(( $1 % 3600 / 60 )) $(( $1 % 60 )); }

# fit_and_test NAME CONFIG EVAL_FILE [extra fit options...]
fit_and_test() {
  local name=$1 config=$2 eval_file=$3
  shift 3
  local runs="$RUNS/$name" dest="$OUT/$name" slack=${FIT_SLACK:-120} test_t=${TEST_TIMEOUT:-90}
  rm -rf "$RUNS/${name}_test" && mkdir -p "$dest"
  if [[ "${SKIP_FIT:-0}" == 1 ]]; then
    SUMMARY+=("$name-fit|skipped|0|SKIP_FIT=1: testing the newest run in $runs")
  else
    rm -rf "$runs"
    local fit_s=${FIT_SECONDS:-}
    if [[ -z "$fit_s" ]]; then fit_s=$(( $(left) - slack - test_t - 20 )); (( fit_s > 420 )) && fit_s=420; fi
    if (( fit_s < 30 )); then SUMMARY+=("$name-fit|skipped|0|no time left"); return 1; fi
    local fit=(fit --config "$config" --trainer.accelerator "$ACCEL" --trainer.max_time "$(hms "$fit_s")"
      --trainer.val_check_interval "${VAL_EVERY:-250}" --trainer.logger.init_args.run_dir "$runs"
      --trainer.logger.init_args.log_model false "$@")
    # shellcheck disable=SC2206
    fit+=(${FIT_ARGS:-})
    step "$name-fit" $(( fit_s + slack )) ember "${fit[@]}" || true
  fi
  local cfg ckpt
  cfg=$(ls -t "$runs"/*/*/config.yaml 2>/dev/null | head -1 || true)
  [[ -n "$cfg" ]] || { SUMMARY+=("$name-test|skipped|0|the fit wrote no config.yaml"); return 1; }
  local run; run=$(dirname "$cfg")
  cp "$cfg" "$dest/config.yaml"
  find "$run" -maxdepth 1 -name '*.png' -exec cp {} "$dest/" \;
  metrics_json "$runs" "$dest/fit_metrics.json" | tee "$dest/fit_metrics.txt"
  for c in best last; do [[ -f "$run/checkpoints/$c.ckpt" ]] && { ckpt="$run/checkpoints/$c.ckpt"; break; }; done
  if [[ -z "${ckpt:-}" ]]; then SUMMARY+=("$name-test|skipped|0|no checkpoint (no validation yet: lower VAL_EVERY)"); return 1; fi
  [[ "${COPY_CKPT:-0}" == 1 ]] && cp "$run"/checkpoints/*.ckpt "$dest/"
  local test=(test --config "$cfg" --ckpt_path "$ckpt" --trainer.logger.init_args.run_dir "$RUNS/${name}_test"
    --trainer.logger.init_args.log_model false)
  if [[ -n "$eval_file" ]]; then test+=(--data.init_args.eval_path "$eval_file"); fi
  if [[ -n "$eval_file" && "$name" == sudoku ]]; then test+=(--data.init_args.eval_limit "${SUDOKU_EVAL_LIMIT:-1000}"); fi
  # shellcheck disable=SC2206
  test+=(${TEST_ARGS:-})
  echo "${ckpt##*/} of $run; eval ${eval_file:-generated test set}" > "$dest/test_source.txt"
  step "$name-test" "$test_t" ember "${test[@]}" || true
  metrics_json "$RUNS/${name}_test" "$dest/test_metrics.json" | tee "$dest/test_metrics.txt"
}

devdata() {  # devdata RELATIVE_PATH: .devdata's copy, else ../shared/data's file (here), else nothing
  if [[ -f ".devdata/$1" ]]; then echo "$ROOT/.devdata/$1"
  elif [[ -f "../shared/data/$1" ]]; then echo "$(cd ../shared/data && pwd)/$1"
  else log "no .devdata/$1 (bash benchmarks/device/device_wheels.sh --data, carry .devdata)" >&2; fi
}

# ---- tasks ---------------------------------------------------------------------------------------------------
task_check() {
  if command -v nvidia-smi > /dev/null; then step nvidia-smi 30 nvidia-smi || true
  else SUMMARY+=("nvidia-smi|absent|0|"); fi
  step imports 90 "$PYTHON" - "$ACCEL" <<'EOF' || return 1
import sys, time
t = time.time()
import torch, lightning, torchmetrics, jsonargparse, mlflow, sqlalchemy, alembic, webdataset, einops, safetensors
import matplotlib
import ember, ember.plugins, ember.data_modules, ember.callbacks, ember.cli
from lightning.pytorch.callbacks import EMAWeightAveraging  # noqa: F401  (the reasoning configs use it)
from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
from ember import registry
for mod in (torch, lightning, torchmetrics, jsonargparse, mlflow, sqlalchemy, alembic, webdataset, matplotlib):
    print(f"{mod.__name__:<14}{getattr(mod, '__version__', '?'):<22}{mod.__file__}")
print(f"{'ember':<14}{ember.__version__:<22}{ember.__file__}  plugins: {ember.plugins.__path__[0]}")
failures = registry.load_plugins()
print(f"plugins: {len(registry.plugins())} registered, failures: {failures or 'none'}")
print(f"python {sys.version.split()[0]}; cuda available: {torch.cuda.is_available()}",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
import sqlite3  # noqa: F401  (the MLflow store)
try:
    import pydoc_data.topics  # noqa: F401  (only TextBytes' built-in corpus reads it)
except ImportError:
    print("note: no pydoc_data in this Python: TextBytes without data.path (the built-in corpus) cannot run")
print(f"imports took {time.time() - t:.1f}s")
if failures or (sys.argv[1] == "gpu" and not torch.cuda.is_available()):
    sys.exit(1)
EOF
  rm -rf "$RUNS/check"
  step fit-debug "${CHECK_TIMEOUT:-150}" ember fit --config configs/debug/sudoku.yaml --trainer.accelerator "$ACCEL" \
    --trainer.max_steps 2 --trainer.val_check_interval 2 --trainer.logger.init_args.run_dir "$RUNS/check" \
    --trainer.logger.init_args.log_model false || return 1
  ls "$RUNS"/check/*/*/checkpoints/last.ckpt > /dev/null && metrics_json "$RUNS/check" "$OUT/check_metrics.json"
}

task_bench() {
  local device=()
  [[ "$ACCEL" == cpu ]] && device=(--device cpu)
  # shellcheck disable=SC2206
  local configs=(${BENCH_CONFIGS:-configs/bench/*.yaml}) extra=(${BENCH_ARGS:-})
  step bench "${BENCH_TIMEOUT:-540}" ember bench --config "${configs[@]}" --contexts "${BENCH_CONTEXTS:-2048,8192,16384}" \
    --steps "${BENCH_STEPS:-5}" --out "$OUT/bench" --run_dir "$RUNS/bench" "${device[@]}" "${extra[@]}" || true
  if [[ -f "$OUT/bench/bench.md" ]]; then cat "$OUT/bench/bench.md"
  elif [[ -f "$OUT/bench/bench.json" ]]; then log "bench: no table, partial results in $OUT/bench/bench.json"; fi
}

task_sudoku() {
  fit_and_test sudoku "${SUDOKU_CONFIG:-configs/reasoning/sudoku.yaml}" "$(devdata sudoku_hard_tdoku/solved/puzzles5_forum_hardest_1905_11+.csv)"
}

task_maze() {
  local train=(--data.init_args.train_path null)  # generated mazes of Maze-Hard's kind where the file is absent
  if [[ "${MAZE_TRAIN:-hard}" == hard ]]; then
    local file; file=$(devdata maze_hard_30x30_1k/train.csv)
    [[ -n "$file" ]] && train=(--data.init_args.train_path "$file")
  fi
  fit_and_test maze "${MAZE_CONFIG:-configs/reasoning/maze.yaml}" "$(devdata maze_hard_30x30_1k/test.csv)" "${train[@]}"
}

summary() {
  {
    echo "| step | status | seconds | note |"
    echo "|---|---|---|---|"
    local row
    for row in "${SUMMARY[@]}"; do echo "| ${row//|/ | } |"; done
    echo
    echo "total $(( $(date +%s) - START ))s; ACCEL=$ACCEL; results in $OUT"
  } | tee "$OUT/summary.md"
}
trap summary EXIT

setup
status=0
for task in "$@"; do
  [[ "$task" == setup ]] && continue
  log "task $task"
  if ! "task_$task"; then
    status=1
    [[ "$task" == check ]] && { log "check failed: the remaining tasks are skipped"; break; }
  fi
done
exit "$status"
