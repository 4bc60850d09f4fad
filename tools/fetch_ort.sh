#!/usr/bin/env bash
# Fetch libonnxruntime.so (1.32.0, CPU, x86_64 manylinux) from the PyPI wheel.
# Usage: tools/fetch_ort.sh DEST_DIR
# Idempotent: does nothing if DEST_DIR/libonnxruntime.so.1.32.0 already exists.
set -euo pipefail

ORT_VERSION=1.32.0
LIB="libonnxruntime.so.${ORT_VERSION}"
PYTHON="${PYTHON:-python3}"

if [ $# -ne 1 ]; then
    echo "usage: $0 DEST_DIR" >&2
    exit 2
fi
DEST="$1"

if [ -f "$DEST/$LIB" ]; then
    ln -sfn "$LIB" "$DEST/libonnxruntime.so"
    echo "fetch_ort: $DEST/$LIB already present"
    exit 0
fi

mkdir -p "$DEST"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Pin the platform so the result does not depend on the local interpreter's tags.
"$PYTHON" -m pip download "onnxruntime==${ORT_VERSION}" --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --disable-pip-version-check -q -d "$TMP"

shopt -s nullglob
WHEELS=("$TMP"/onnxruntime-"${ORT_VERSION}"-cp311-cp311-manylinux*x86_64*.whl)
if [ ${#WHEELS[@]} -ne 1 ]; then
    echo "fetch_ort: expected one cp311 manylinux x86_64 wheel, got: $(ls "$TMP")" >&2
    exit 1
fi
echo "fetch_ort: using $(basename "${WHEELS[0]}")"

"$PYTHON" - "${WHEELS[0]}" "$DEST" "$LIB" <<'PY'
import os, shutil, sys, zipfile
whl, dest, lib = sys.argv[1:4]
member = "onnxruntime/capi/" + lib
with zipfile.ZipFile(whl) as z:
    tmp = os.path.join(dest, lib + ".part")
    with z.open(member) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.chmod(tmp, 0o755)
    os.replace(tmp, os.path.join(dest, lib))
PY

ln -sfn "$LIB" "$DEST/libonnxruntime.so"
echo "fetch_ort: installed $DEST/$LIB"
