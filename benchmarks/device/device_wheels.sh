#!/usr/bin/env bash
# Prepare, on a machine with pip and a network, what the GPU machine (nvidia-h200: Python 3.12, torch 2.11,
# no network) lacks to run Ember; benchmarks/device/DEVICE.md says how a session uses it.
#
#   bash benchmarks/device/device_wheels.sh            wheels into .whl/ (and .whl/fallback/), checked, total size
#   bash benchmarks/device/device_wheels.sh --data     also copies the eval data the sudoku/maze steps read into .devdata/
#   bash benchmarks/device/device_wheels.sh --resolve  re-derive the pins: pip's resolver for the device's platform,
#                                                      split into "carry" / "on the device" (then edit CARRY below)
#
# .whl/: every package Ember needs that the device image lacks, with its dependency closure minus what the
# image has (pip's resolver for cp312 manylinux x86-64; names on the device from KINDS.md, in device_deps.py).
# .whl/fallback/: packages the image HAS, at the version the carried ones want; the image's versions are not
# known here, so device_session.sh installs one only if the image's copy fails a requirement.
# .devdata/: the first lines of ../shared/data files (../shared does not travel to the device).
# Both folders are listed in .git/info/exclude (never committed) and go to the device with carry [".whl", ".devdata"].
# Environment: PIP (default: .venv/bin/python -m pip, else python3 -m pip), SHARED_DATA (default ../shared/data),
# SUDOKU_LINES (default 1000 puzzles), MAZE_LINES (default 1000 mazes: all of train, all 500 of test).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root (this script is in benchmarks/device/)
MODE=${1:-}
case "$MODE" in ""|--data|--resolve) ;; *) sed -n '2,8p' "$0" >&2; exit 2 ;; esac

# Versions as in .venv (pip freeze) where they exist; all support Python 3.12.
CARRY=(
  jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0 lazy-importer==0.1.0
  mlflow-skinny==3.18.0 sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3 sqlparse==0.6.1
  webdataset==1.0.2 braceexpand==0.1.7
  cachetools==7.3.3 databricks-sdk==0.167.0 google-auth==2.63.0 pyasn1==0.6.5 pyasn1-modules==0.4.2
  cryptography==50.0.2 cffi==2.1.1 pycparser==3.12
  fastapi==0.165.0 starlette==1.10.0 uvicorn==0.55.0 python-multipart==0.0.34 python-dotenv==1.2.4
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  gitpython==3.2.1 gitdb==4.0.12 smmap==5.0.3 importlib-metadata==10.2.0
  opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-proto==1.45.2
  opentelemetry-semantic-conventions==0.66b2
)
# On the device already; the lower bounds that matter: typing-extensions>=4.16 (pydantic, pydantic-core),
# certifi>=2026.10.19 (databricks-sdk), protobuf>=5.26.1,<8 (opentelemetry-proto's generated code checks the
# runtime), anyio!=4.15.0 (mlflow-skinny), packaging<27 (mlflow-skinny), zipp>=3.20 (importlib-metadata).
FALLBACK=(typing-extensions==4.16.0 certifi==2026.10.19.post1 protobuf==7.36.2 anyio==4.16.0 packaging==26.4 zipp==4.1.2)
PLATFORM_ARGS=(--only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
if [[ -z "${PIP:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PIP=".venv/bin/python -m pip"; else PIP="python3 -m pip"; fi
fi
PY=${PIP% -m pip}   # the same interpreter runs device_deps.py (it needs `packaging`, or pip's copy)

pip_quiet() {  # run pip, show its output only if it fails (minus this machine's find-links warnings)
  local log; log=$(mktemp)
  if ! $PIP "$@" > "$log" 2>&1; then grep -v "is ignored: it is neither" "$log" >&2; rm -f "$log"; return 1; fi
  rm -f "$log"
}
exclude() {  # add a pattern to .git/info/exclude once
  local file; file=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$file")"; touch "$file"
  grep -qxF "$1" "$file" || { echo "$1" >> "$file"; echo "added $1 to $file"; }
}
exclude /.whl/
exclude /.devdata/

if [[ "$MODE" == "--resolve" ]]; then
  tmp=$(mktemp -d)
  pip_quiet install --dry-run --ignore-installed --report "$tmp/report.json" "${PLATFORM_ARGS[@]}" --target "$tmp/x" \
    'jsonargparse[signatures]>=4.39,<5' 'mlflow-skinny>=2.16,<4' 'sqlalchemy>=2' 'alembic>=1.13' 'webdataset>=0.2.90,<2'
  $PY benchmarks/device/device_deps.py closure "$tmp/report.json"
  rm -rf "$tmp"
  exit 0
fi

# Fresh folders each time, so a changed pin never leaves two versions of one package.
rm -rf .whl.new && mkdir -p .whl.new/fallback
pip_quiet download --no-deps "${PLATFORM_ARGS[@]}" -d .whl.new "${CARRY[@]}"
pip_quiet download --no-deps "${PLATFORM_ARGS[@]}" -d .whl.new/fallback "${FALLBACK[@]}"
for pair in ".whl.new ${#CARRY[@]}" ".whl.new/fallback ${#FALLBACK[@]}"; do
  read -r dir want <<< "$pair"
  got=$(find "$dir" -maxdepth 1 -name '*.whl' | wc -l)
  [[ "$got" == "$want" ]] || { echo "expected $want wheels in $dir, got $got" >&2; exit 1; }
done
rm -rf .whl && mv .whl.new .whl
$PY benchmarks/device/device_deps.py wheels .whl .whl/fallback
echo "total size of .whl: $(du -sh .whl | cut -f1) (the device call carries at most 64 MiB in all)"

if [[ "$MODE" == "--data" ]]; then
  src=${SHARED_DATA:-../shared/data}
  sudoku=sudoku_hard_tdoku/solved/puzzles5_forum_hardest_1905_11+.csv
  mkdir -p .devdata/sudoku_hard_tdoku/solved .devdata/maze_hard_30x30_1k
  head -n $(( ${SUDOKU_LINES:-1000} + 1 )) "$src/$sudoku" > ".devdata/$sudoku"
  for split in train test; do
    head -n $(( ${MAZE_LINES:-1000} + 1 )) "$src/maze_hard_30x30_1k/$split.csv" > ".devdata/maze_hard_30x30_1k/$split.csv"
  done
  {
    echo "First lines (header + N rows) of files in $src, copied by benchmarks/device/device_wheels.sh --data."
    echo "Provenance and licences: SOURCE.md beside each file there. Never commit this folder."
    (cd .devdata && find . -name '*.csv' -print0 | sort -z | xargs -0 wc -l)
  } > .devdata/README.txt
  cat .devdata/README.txt
  echo "total size of .devdata: $(du -sh .devdata | cut -f1)"
fi
