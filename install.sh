#!/usr/bin/env bash
# Make .venv with the exact pins and the package (editable). Safe to run again.
# Every install passes constraints.txt (torch==2.13.0): without it pip swaps in a multi-GB CUDA torch.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -r requirements.lock
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt -e .
# The notebooks' kernel starts with the CPU kernel paths pinned (vggrepro/core/kernels.py owns the list).
mapfile -t PIN < <(.venv/bin/python -c "from vggrepro.core.kernels import PINNED
for k, v in PINNED.items(): print('--env'); print(k); print(v)")
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" "${PIN[@]}" >/dev/null
# JupyterLab opens a chapter's .py twin as a notebook (jupytext's viewer), not as plain text.
mkdir -p .venv/share/jupyter/lab/settings
cp jupyterlab/overrides.json .venv/share/jupyter/lab/settings/overrides.json
