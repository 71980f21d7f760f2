#!/usr/bin/env bash
# The one-command GPU check (issues 17, 33): every figure the gpu book needs from one GPU, in at most
# 5 minutes, each step under its own cap; $OUT/gpu_check.json when OUT is set, else
# results/gpu_check.json, rewritten after every step (a stopped run keeps every finished step).
#   bash scripts/gpu_check.sh             # on the GPU machine
#   bash scripts/gpu_check.sh --dry-run   # the same control flow on the CPU at toy size (CI runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONUNBUFFERED=1
# The check keeps to 300 s by itself (SIGINT from here, then a kill, only catch a hang in C code).
exec timeout --signal=INT --kill-after=15 330 "$PY" -m vggrepro bench gpu "$@"
