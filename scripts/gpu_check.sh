#!/usr/bin/env bash
# The one-command GPU check (issue 17): every figure the gpu book needs from one GPU, in at most
# 8 minutes, each step under its own cap; writes results/gpu_check.json with its provenance.
#   bash scripts/gpu_check.sh             # on the GPU machine
#   bash scripts/gpu_check.sh --dry-run   # the same steps on the CPU at toy size (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
# The check keeps to 480 s by itself; the hard limit only catches a hang.
exec timeout --signal=INT --kill-after=20 510 "$PY" -m vggrepro bench gpu "$@"
