#!/usr/bin/env bash
# The training environment (models/training/README.md), reproducibly:
# Debian's CPU torch and torchvision (apt, needs root or sudo) and a venv with
# the system site packages plus requirements-train.txt.
#
#   bash models/training/train_env.sh [VENV]     (default: train-venv in the repository root)
#
# Idempotent: skipped when VENV holds a stamp matching requirements-train.txt.
# Never part of `make test` (`make train-env` runs it).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${1:-$HERE/../../train-venv}"
REQ="$HERE/requirements-train.txt"
STAMP="$VENV/.requirements-train.sha256"
HASH="$(sha256sum "$REQ" | cut -d' ' -f1)"
# Debian's interpreter, whose dist-packages hold python3-torch (a pyenv or
# other python3 first on PATH would not see them).
PY=/usr/bin/python3

if ! $PY -c "import torch, torchvision" 2>/dev/null; then
  echo "train_env: installing python3-torch python3-torchvision (Debian)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get -o DPkg::Lock::Timeout=900 update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
    --no-install-recommends python3-torch python3-torchvision python3-venv
fi
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  echo "train_env: $VENV up to date"
  exit 0
fi
[ -x "$VENV/bin/python" ] || $PY -m venv --system-site-packages "$VENV"
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --only-binary=:all: --no-deps -r "$REQ"
"$VENV/bin/python" - <<'PY'
import numpy, torch, torchvision, onnxruntime, pydicom, pylibjpeg
assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__}: Debian's torch needs numpy 1.x"
torch.from_numpy(numpy.zeros(1))  # fails with "Numpy is not available" on a mismatch
print("train_env: ok, torch", torch.__version__, "torchvision", torchvision.__version__, "numpy", numpy.__version__,
      "onnxruntime", onnxruntime.__version__, "pydicom", pydicom.__version__)
PY
echo "$HASH" > "$STAMP"
