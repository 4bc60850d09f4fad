#!/usr/bin/env bash
# Create (or reuse) the Python venv used by tests and reference tools.
# Usage: tools/make_venv.sh VENV_DIR
# Idempotent: skipped when VENV_DIR holds a stamp matching tools/requirements-test.txt.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
VENV="$1"
PYTHON="${PYTHON:-python3}"
REQ="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/requirements-test.txt"
REQ_HASH="$(sha256sum "$REQ" | cut -d' ' -f1)"
STAMP="$VENV/.requirements.sha256"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$REQ_HASH" ]; then
    echo "make_venv: $VENV up to date"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    --only-binary=:all: --no-deps -r "$REQ"
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -c "import numpy, pyarrow, duckdb, polars, pydicom, pylibjpeg, PIL, onnx, onnxruntime, sklearn, scipy, highdicom, fhir.resources, hl7apy; print('make_venv: ok, onnxruntime', onnxruntime.__version__, 'pydicom', pydicom.__version__, 'pillow', PIL.__version__)"
echo "$REQ_HASH" > "$STAMP"
