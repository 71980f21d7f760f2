#!/usr/bin/env bash
# The one command for a short GPU window (issue 33), at most 9 minutes: the GPU check, then as much
# of the gpu book's chapter 2 (net D at 224 px) as fits; every result in $OUT (or --out DIR).
#   bash scripts/gpu_window.sh --stamp     # here, before the tree is copied: the commit travels in a file
#   OUT=/some/dir bash scripts/gpu_window.sh             # on the GPU machine
#   OUT=/tmp/w bash scripts/gpu_window.sh --dry-run      # the same control flow on the CPU, tiny
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ "${1:-}" = "--stamp" ]; then
    exec "$PY" -c 'from vggrepro.bench import gpu_window; print("wrote", gpu_window.stamp())'
fi
export PYTHONUNBUFFERED=1
# The window plans to end by 525 s; SIGINT at 540 s keeps what is finished, a kill 10 s later.
exec timeout --signal=INT --kill-after=10 540 "$PY" -m vggrepro bench window "$@"
