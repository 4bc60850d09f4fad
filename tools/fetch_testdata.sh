#!/usr/bin/env bash
# Fetch real DICOM test objects from PyPI wheels:
#   pydicom 3.0.2       pydicom/data/test_files/**   -> DEST_DIR/pydicom/
#   pydicom-data 1.0.0  data_store/data/*            -> DEST_DIR/pydicom-data/
# Usage: tools/fetch_testdata.sh DEST_DIR
# Idempotent: a stamp file records a completed extraction.
set -euo pipefail

PYDICOM_VERSION=3.0.2
PYDICOM_DATA_VERSION=1.0.0
PYTHON="${PYTHON:-python3}"

if [ $# -ne 1 ]; then
    echo "usage: $0 DEST_DIR" >&2
    exit 2
fi
DEST="$1"
STAMP="$DEST/.stamp-pydicom-${PYDICOM_VERSION}-pydicom-data-${PYDICOM_DATA_VERSION}"

if [ -f "$STAMP" ]; then
    echo "fetch_testdata: $DEST already populated ($(basename "$STAMP"))"
    exit 0
fi

mkdir -p "$DEST"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PYTHON" -m pip download "pydicom==${PYDICOM_VERSION}" "pydicom-data==${PYDICOM_DATA_VERSION}" \
    --no-deps --only-binary=:all: --disable-pip-version-check -q -d "$TMP"

rm -rf "$DEST/pydicom" "$DEST/pydicom-data"

"$PYTHON" - "$TMP" "$DEST" "$PYDICOM_VERSION" "$PYDICOM_DATA_VERSION" <<'PY'
import glob, os, shutil, sys, zipfile

tmp, dest, v_pd, v_data = sys.argv[1:5]

def extract(wheel_glob, prefix, out):
    wheels = glob.glob(os.path.join(tmp, wheel_glob))
    if len(wheels) != 1:
        sys.exit(f"fetch_testdata: expected one wheel matching {wheel_glob}, got {wheels}")
    n = 0
    with zipfile.ZipFile(wheels[0]) as z:
        for info in z.infolist():
            name = info.filename
            if info.is_dir() or not name.startswith(prefix):
                continue
            rel = name[len(prefix):]
            if not rel or rel.startswith("/") or ".." in rel.split("/"):
                continue
            target = os.path.join(out, *rel.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            n += 1
    if n == 0:
        sys.exit(f"fetch_testdata: nothing under {prefix} in {wheels[0]}")
    print(f"fetch_testdata: {n} files -> {out}")

extract(f"pydicom-{v_pd}-*.whl", "pydicom/data/test_files/", os.path.join(dest, "pydicom"))
extract(f"pydicom_data-{v_data}-*.whl", "data_store/data/", os.path.join(dest, "pydicom-data"))
PY

touch "$STAMP"
