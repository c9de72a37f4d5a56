#!/usr/bin/env bash
# Builds benchmarks/peers/.venv: the CPU build of torch, Ember from this repository (editable) and the two peers
# at pinned versions, kept out of the project's own dependencies (issue 36). Idempotent: a second run reuses the
# venv and pip leaves what is already installed. Prints the versions at the end.
#   bash benchmarks/peers/setup.sh            (from anywhere; PYTHON=python3.11 picks the interpreter)
# Then: benchmarks/peers/.venv/bin/python benchmarks/peers/compare.py --help
set -euo pipefail

TORCH_VERSION=2.13.0            # the project's CPU pin (constraints-cpu.txt); any other version pulls a CUDA build
TITANS_VERSION=0.5.5            # titans-pytorch: MemoryAsContextTransformer
TRM_VERSION=0.0.15              # tiny-recursive-model: TinyRecursiveModel, MLPMixer1D
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="$VENV/constraints.txt"

fail() { echo "benchmarks/peers/setup.sh: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' on PATH: set PYTHON=/path/to/python3 (3.10 or newer)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || fail "$PYTHON is $("$PYTHON" --version 2>&1); Ember and the peers need Python 3.10 or newer"
[ -f "$REPO/pyproject.toml" ] || fail "no pyproject.toml in $REPO: run this script from the Ember repository"

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV"
  "$PYTHON" -m venv "$VENV" || fail "could not create the venv at $VENV (is the venv module installed?)"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"

# torch first and alone, so nothing later can pick another build; every later install keeps it by the constraint
"${PIP[@]}" install -q "torch==$TORCH_VERSION" \
  || fail "pip could not install torch==$TORCH_VERSION (the CPU build; see constraints-cpu.txt)"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -e "$REPO" \
  || fail "pip could not install Ember from $REPO (editable) with torch held at $TORCH_VERSION"
"${PIP[@]}" install -q -c "$CONSTRAINTS" "titans-pytorch==$TITANS_VERSION" "tiny-recursive-model==$TRM_VERSION" \
  || fail "pip could not install titans-pytorch==$TITANS_VERSION and tiny-recursive-model==$TRM_VERSION with torch at \
$TORCH_VERSION: check that the registry still has these versions (pip index versions NAME)"

"$VENV/bin/python" - <<'EOF' || fail "the venv is built but an import fails (see above)"
from importlib.metadata import version

import ember  # noqa: F401
import tiny_recursive_model  # noqa: F401
import titans_pytorch  # noqa: F401
import torch

for name in ("torch", "ember", "titans-pytorch", "tiny-recursive-model"):
    print(f"{name}=={version(name)}")
print(f"torch threads by default: {torch.get_num_threads()}")
EOF
echo "ready: $VENV/bin/python $HERE/compare.py --help"
